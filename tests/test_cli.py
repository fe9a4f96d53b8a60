"""``python -m tocsin list``: signals and their receivers, as tables or JSON."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import tocsin
import tocsin.signals
from tocsin.__main__ import main

SHOP = """\
import functools

from tocsin import Signal, receiver
from tocsin.signals import post_save

order_placed = Signal()
order_cancelled = Signal()


class Order:
    pass


@receiver(order_placed, priority=10)
def send_receipt(sender, **kwargs):
    return "receipt"


async def notify_warehouse(sender, **kwargs):
    return "notified"


order_placed.connect(notify_warehouse)


class Audit:
    def record(self, sender, **kwargs):
        return "recorded"


audit = Audit()
order_placed.connect(audit.record, sender=Order, dispatch_uid="shop.audit")


def log(sender, level, **kwargs):
    return level


order_placed.connect(functools.partial(log, level="info"), weak=False)
order_placed.connect(send_receipt, on_commit=True, robust=False, dispatch_uid="late")
post_save.connect(send_receipt, sender=Order)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with clishop.py, made the current directory. The built-in signals
    start without receivers (whatever other tests left), and what the CLI imports and
    connects is undone after the test."""
    (tmp_path / "clishop.py").write_text(SHOP, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    importlib.invalidate_caches()
    builtins = [s for s in vars(tocsin.signals).values() if isinstance(s, tocsin.Signal)]
    saved = [signal.receivers for signal in builtins]
    for signal in builtins:
        signal.receivers = []
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)
    for signal, receivers in zip(builtins, saved, strict=True):
        signal.receivers = receivers


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()


def test_list_prints_a_table_per_signal(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each signal of the module gets a table of its receivers, in send order."""
    assert main(["list", "clishop"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "clishop.order_cancelled  (no receivers)" in lines
    start = lines.index("clishop.order_placed  (5 receivers)")
    header, rule, *rows = lines[start + 1 : start + 10]
    assert header.split() == ["receiver", "defined", "at", "sender", "held", "runs", "options"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert [row.split() for row in rows] == [
        ["clishop.send_receipt", "clishop.py:14", "any", "weak", "sync", "priority=10"],
        [
            "clishop.Audit.record",
            "clishop.py:27",
            "clishop.Order",
            "weak",
            "sync",
            "uid='shop.audit'",
        ],
        ["functools.partial(clishop.log)", "clishop.py:35", "any", "strong", "sync", "-"],
        ["clishop.notify_warehouse", "clishop.py:19", "any", "weak", "async", "-"],
        ["clishop.send_receipt", "clishop.py:14", "any", "weak", "sync", "on_commit"],
        # options that do not fit in 100 columns are wrapped in their column
        ["robust=False"],
        ["uid='late'"],
    ]
    # Columns line up: every cell of a column starts where its header does.
    assert {row.index("clishop.py") for row in rows[:5]} == {header.index("defined at")}
    assert {row.index("robust") for row in rows[5:6]} == {header.index("options")}
    assert all(len(line) <= 100 for line in lines)
    assert lines[-1] == "3 signals, 6 receivers"


def test_builtin_signals_are_listed_when_they_have_receivers(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tocsin's own signals appear when connected to, under their own name."""
    assert main(["list", "clishop"]) == 0
    out = capsys.readouterr().out
    assert "tocsin.signals.post_save  (1 receiver)" in out
    assert "clishop.post_save" not in out
    assert "request_started" not in out


def test_list_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints every signal with every field of every receiver."""
    assert main(["list", "--json", "clishop"]) == 0
    data = json.loads(capsys.readouterr().out)
    signals = {s["name"]: s["receivers"] for s in data["signals"]}
    assert signals["clishop.order_cancelled"] == []
    first, audit, partial, warehouse, late = signals["clishop.order_placed"]
    assert first == {
        "name": "clishop.send_receipt",
        "module": "clishop",
        "qualname": "send_receipt",
        "kind": "function",
        "file": str(project / "clishop.py"),
        "line": 14,
        "sender": None,
        "weak": True,
        "async": False,
        "on_commit": False,
        "robust": None,
        "priority": 10,
        "dispatch_uid": None,
    }
    assert (audit["kind"], audit["sender"], audit["dispatch_uid"]) == (
        "method",
        "clishop.Order",
        "shop.audit",
    )
    assert (partial["kind"], partial["weak"]) == ("partial", False)
    assert warehouse["async"] is True
    assert (late["on_commit"], late["robust"]) == (True, False)


def test_list_a_file_path(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .py file is imported under the name its packages give it."""
    write(project / "app" / "__init__.py", "")
    write(
        project / "app" / "events.py",
        """
        from tocsin import Signal
        shipped = Signal()
        """,
    )
    assert main(["list", "app/events.py"]) == 0
    assert "app.events.shipped  (no receivers)" in capsys.readouterr().out


def test_list_a_package_includes_its_imported_submodules(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A package (by name or directory) brings the signals of the submodules it imports."""
    write(project / "pkg" / "__init__.py", "from . import events\n")
    write(project / "pkg" / "events.py", "from tocsin import Signal\nshipped = Signal()\n")
    assert main(["list", "pkg"]) == 0
    assert "pkg.events.shipped" in capsys.readouterr().out
    assert main(["list", "pkg/"]) == 0
    assert "pkg.events.shipped" in capsys.readouterr().out


def test_list_all(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--all lists every live signal, with or without receivers and modules."""
    assert main(["list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "tocsin.signals.request_started  (" in out
    assert "tocsin.signals.user_logged_out  (" in out


def test_output_fits_in_100_columns(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Names too long even without their module are cut in the middle, and so are
    long options, so that the table stays 100 columns wide."""
    write(
        project / "longnames.py",
        f"""
        from tocsin import Signal
        signal = Signal()
        class {"Very" * 20}LongName:
            def {"handle_" * 10}event(self, sender, **kwargs):
                pass
        handler = {"Very" * 20}LongName()
        signal.connect(handler.{"handle_" * 10}event, dispatch_uid="{"uid-" * 20}")
        """,
    )
    assert main(["list", "longnames"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    row = lines[3]
    # Too long for module.qualname: the qualified name, cut in the middle.
    name = row.split()[0]
    assert name.startswith("VeryVery")
    assert "..." in name
    assert name.endswith("LongName.handle_handle_handle_handle_handle_event"[-20:])
    assert "longnames.py:5" in row


def test_what_modules_print_stays_out_of_json(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A module that prints when imported does not break the JSON."""
    write(project / "noisy.py", "from tocsin import Signal\nprint('hello')\nsignal = Signal()\n")
    assert main(["list", "--json", "noisy"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["signals"][0]["name"] == "noisy.signal"
    assert "hello" in captured.err


def test_module_not_found(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A module that does not exist is a usage error, exit code 2."""
    assert main(["list", "no_such_module_here"]) == 2
    err = capsys.readouterr().err
    assert "no module named 'no_such_module_here'" in err
    assert "Traceback" not in err
    assert main(["list", "clishop.nothing"]) == 2
    assert "no module named 'clishop.nothing'" in capsys.readouterr().err


def test_file_not_found(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not a .py file or package is a usage error."""
    assert main(["list", "missing.py"]) == 2
    assert "no such .py file or package directory" in capsys.readouterr().err
    (project / "plain").mkdir()
    assert main(["list", "plain/"]) == 2
    assert "without an __init__.py" in capsys.readouterr().err


def test_not_a_module_name(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Something that is neither a dotted name nor a path is a usage error."""
    assert main(["list", "not-a-module"]) == 2
    assert "neither a module name nor the path of a .py file" in capsys.readouterr().err


def test_file_shadowed_by_an_imported_module(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file named like a module already imported is refused, not silently replaced."""
    write(project / "json.py", "from tocsin import Signal\nsignal = Signal()\n")
    assert main(["list", "json.py"]) == 2
    assert "already the module" in capsys.readouterr().err


def test_module_that_fails_to_import(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An error raised while importing is shown with the module's own traceback, exit 1."""
    write(project / "broken.py", "import missing_dependency_of_broken\n")
    assert main(["list", "broken"]) == 1
    err = capsys.readouterr().err
    assert "tocsin: importing broken failed:" in err
    assert "ModuleNotFoundError: No module named 'missing_dependency_of_broken'" in err
    assert "importlib" not in err
    write(project / "exits.py", "raise SystemExit(3)\n")
    assert main(["list", "exits"]) == 1


def test_no_signals_found(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A module without signals says so, exit 1; --json still prints JSON."""
    write(project / "quiet.py", "x = 1\n")
    assert main(["list", "quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no signals found in quiet (pass --all" in captured.err
    assert main(["list", "--json", "quiet"]) == 1
    assert json.loads(capsys.readouterr().out) == {"signals": []}


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """--help and --version exit 0; a missing command or module exits 2."""
    assert main(["--help"]) == 0
    assert "list" in capsys.readouterr().out
    assert main(["list", "-h"]) == 0
    assert "MODULE_OR_FILE" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tocsin {tocsin.__version__}"
    assert main([]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["list"]) == 2
    assert "name at least one module" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_docs_sample_output(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example of docs/introspection.md prints what the page says it prints."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "introspection.md").read_text(
        encoding="utf-8"
    )
    blocks = re.findall(r"^```([^\n]*)\n(.*?)^```$", page, flags=re.MULTILINE | re.DOTALL)
    files = [code for info, code in blocks if code.startswith("# shop/")]
    assert len(files) == 2
    for code in files:
        write(project / code.split("\n", 1)[0].removeprefix("# "), code)
    write(project / "shop" / "__init__.py", "")
    write(project / "shop" / "models.py", "class Order:\n    pass\n")
    command = "$ tocsin list shop.signals shop.receivers\n"
    [sample] = [code for info, code in blocks if info == "text" and code.startswith(command)]
    assert main(["list", "shop.signals", "shop.receivers"]) == 0
    assert capsys.readouterr().out == sample.removeprefix(command)


def test_python_dash_m(tmp_path: Path) -> None:
    """python -m tocsin list imports from the current directory, as python -m does."""
    (tmp_path / "clishop.py").write_text(SHOP, encoding="utf-8")
    run = [sys.executable, "-m", "tocsin", "list"]
    result = subprocess.run(
        [*run, "clishop"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "clishop.order_placed  (5 receivers)" in result.stdout
    assert "  clishop.send_receipt  " in result.stdout
    result = subprocess.run(
        [*run, "--json", "nowhere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("python -m tocsin: error: no module named 'nowhere'")
