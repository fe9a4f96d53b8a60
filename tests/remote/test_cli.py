"""``python -m tocsin worker``: find the module's Remote and consume its stream."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tocsin.__main__ import main

APP = """\
import os
import signal as signals

from tocsin import Signal
from tocsin.remote import Remote
from tocsin.remote import MemoryTransport

job_done = Signal()
remote = Remote(MemoryTransport(), stream="jobs")
remote.publish(job_done)
handled = []


def on_job(sender, **kwargs):
    handled.append(kwargs["job"])
    if len(handled) == 3:
        os.kill(os.getpid(), signals.SIGTERM)  # what a deployment does to stop it


# Three events sent by "another process" before the worker starts.
for job in range(3):
    job_done.send(None, job=job)
job_done.connect(on_job)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding workerapp.py, made the current directory; what the CLI
    imports is forgotten afterwards."""
    (tmp_path / "workerapp.py").write_text(APP, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules.pop(name, None)
        signal = getattr(module, "job_done", None)
        if signal is not None:
            signal.receivers = []


def write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()


def test_the_worker_runs_events_and_stops_on_sigterm(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It consumes the Remote's stream, runs the receivers, and exits 0 on SIGTERM."""
    caplog.set_level("INFO", logger="tocsin.worker")
    assert main(["worker", "workerapp", "--consumer", "w1", "--batch", "2"]) == 0
    app = sys.modules["workerapp"]
    assert app.handled == [0, 1, 2]
    assert app.remote.transport.pending("jobs", "tocsin").count == 0
    assert "Worker w1 consuming 'jobs' as group 'tocsin': 1 signal(s), 0 receiver(s)" in caplog.text
    assert "SIGTERM received" in caplog.text
    assert "Worker w1 stopped" in caplog.text


def test_a_remote_can_be_named(project: Path) -> None:
    """module:attribute picks one Remote."""
    assert main(["worker", "workerapp:remote", "--group", "g"]) == 0
    assert sys.modules["workerapp"].remote.transport.pending("jobs", "g").count == 0


def test_a_module_without_a_remote_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with a hint when no Remote is defined."""
    write(project / "empty.py", "x = 1\n")
    assert main(["worker", "empty"]) == 2
    assert "no Remote found in empty" in capsys.readouterr().err


def test_several_remotes_must_be_told_apart(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 naming them when a module defines two."""
    write(
        project / "two.py",
        """\
        from tocsin.remote import Remote
        from tocsin.remote import MemoryTransport

        orders = Remote(MemoryTransport(), stream="orders")
        emails = Remote(MemoryTransport(), stream="emails")
        """,
    )
    assert main(["worker", "two"]) == 2
    assert "several Remotes found (two:emails, two:orders)" in capsys.readouterr().err


def test_a_named_attribute_must_be_a_remote(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 when module:attribute is something else."""
    assert main(["worker", "workerapp:job_done"]) == 2
    assert "workerapp:job_done is not a Remote (it is Signal)" in capsys.readouterr().err


def test_bad_options_are_usage_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad log level or a non-positive batch exits 2 with a message."""
    assert main(["worker", "workerapp", "--log-level", "LOUD"]) == 2
    assert "unknown log level 'LOUD'" in capsys.readouterr().err
    assert main(["worker", "workerapp", "--batch", "0"]) == 2
    assert "batch must be a positive integer" in capsys.readouterr().err


def test_a_missing_module_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 when the module does not exist."""
    assert main(["worker", "no_such_module_here"]) == 2
    assert "no module named 'no_such_module_here'" in capsys.readouterr().err


def test_an_import_error_in_the_app_is_reported(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 with the app's own traceback when importing it fails."""
    write(project / "broken.py", "raise RuntimeError('misconfigured')\n")
    assert main(["worker", "broken"]) == 1
    err = capsys.readouterr().err
    assert "importing broken failed" in err
    assert "RuntimeError: misconfigured" in err


def test_every_worker_option_reaches_the_worker(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line's options are the Worker's."""
    from tocsin import remote as worker_module

    made: list[worker_module.Worker] = []

    class Recording(worker_module.Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)
            self.stop()  # only its options are looked at

    monkeypatch.setattr("tocsin.remote._cli.Worker", Recording)
    options = [
        "--group", "g", "--consumer", "c", "--batch", "7", "--max-attempts", "4",
        "--retry-delay", "0.5", "--retry-backoff", "3", "--max-retry-delay", "9",
        "--claim-after", "11", "--block", "0.2", "--dead-stream", "graveyard",
        "--relay-every", "2", "--trim-every", "30", "--concurrency", "8",
    ]  # fmt: skip
    assert main(["worker", "workerapp", *options]) == 0
    [worker] = made
    assert (worker.group, worker.consumer, worker.batch, worker.max_attempts) == ("g", "c", 7, 4)
    assert (worker.retry_delay, worker.retry_backoff, worker.max_retry_delay) == (0.5, 3, 9)
    assert (worker.claim_after, worker.block, worker.dead_stream) == (11, 0.2, "graveyard")
    assert (worker.relay_every, worker.trim_every, worker.concurrency) == (2, 30, 8)
    assert main(["worker", "workerapp", "--no-trim"]) == 0
    assert made[1].trim_every is None


DOCS = Path(__file__).parents[2] / "docs"


def _subcommands(monkeypatch: pytest.MonkeyPatch) -> dict[str, argparse.ArgumentParser]:
    from tocsin.__main__ import _parser

    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps usage lines to the terminal's width
    monkeypatch.setattr(sys, "argv", ["tocsin"])  # the program's name, as installed
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: commands.choices[name] for name in ("worker", "status", "dead-letters")}


@pytest.mark.parametrize("name", ["worker", "status", "dead-letters"])
def test_the_api_reference_quotes_each_command_s_usage(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reference/cli.md shows each command's usage exactly as its parser prints it."""
    usage = _subcommands(monkeypatch)[name].format_usage()
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert f"## `tocsin {name}`\n\n```text\n{usage}```\n" in page, (
        f"update the usage of tocsin {name} in docs/reference/cli.md to:\n{usage}"
    )


def test_the_worker_options_table_matches_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The options table of docs/scaling-out.md lists every option of `tocsin worker`,
    with its metavar and default, and nothing else."""
    page = (DOCS / "scaling-out.md").read_text(encoding="utf-8")
    section = page.split("## The `tocsin worker` command", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z-]+)((?: [A-Z]+)?)` \| ?(`[^`]*`)? ?\|", section, re.M)
    documented = {
        option: (metavar.strip(), default.strip("`")) for option, metavar, default in rows
    }
    expected = {}
    for action in _subcommands(monkeypatch)["worker"]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        [option] = action.option_strings
        default = action.default
        if isinstance(default, float):
            default = format(default, "g")
        shown = "" if default in (None, False) else str(default)
        metavar = "" if action.nargs == 0 else str(action.metavar or action.dest.upper())
        expected[option] = (metavar, shown)
    # A default computed at run time (None in the parser) is described in words.
    for option, (metavar, shown) in expected.items():
        if not shown and option in documented and documented[option][1]:
            expected[option] = (metavar, documented[option][1])
    assert documented == expected
