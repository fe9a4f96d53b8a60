"""The package as users get it: the sdist and the wheel, built as a release builds
them (``python -m build``: the wheel from the unpacked sdist), then each public
extra installed alone from the wheel into a fresh virtual environment, where a
script uses it for real.

The environments are made in parallel, with pip's cache; the packages come from
the index, so this needs it (or a warm cache). Run on one Python only: what it
checks does not depend on which.
"""

from __future__ import annotations

import concurrent.futures
import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import NamedTuple

import pytest

import tocsin
from tocsin._compiled import speedups

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_EXTRAS = ("django", "sqlalchemy", "otel", "redis")
# OpenTelemetry's: what the instrumentor instruments (tocsin itself, so nothing).
EMPTY_EXTRAS = ("instruments",)

# Each script runs in its extra's environment, from a directory of its own.
COMMON = """
import importlib, importlib.metadata, sys
import tocsin
assert tocsin.__file__.startswith(sys.prefix), f"not the wheel's tocsin: {tocsin.__file__}"
assert importlib.metadata.version("tocsin") == tocsin.__version__
from tocsin._compiled import speedups
assert (speedups is not None) == COMPILED_WHEEL, (speedups, COMPILED_WHEEL)
"""
SCRIPTS = {
    "": """
    from tocsin import Signal

    placed = Signal()

    def on_placed(sender, **kwargs):
        return "noted"

    placed.connect(on_placed)
    assert placed.send(sender=None) == [(on_placed, "noted")]
    for module, extra in [
        ("tocsin.contrib.django", "django"),
        ("tocsin.contrib.sqlalchemy", "sqlalchemy"),
        ("tocsin.contrib.otel", "otel"),
        ("tocsin.remote.transports.redis", "redis"),
    ]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            assert f"tocsin[{extra}]" in str(error), error
        else:
            raise AssertionError(f"{module} imported without its extra")
    """,
    "django": """
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "tocsin.contrib.django",
            "django.contrib.contenttypes",
            "django.contrib.auth",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import transaction
    from django.db.models.signals import post_migrate, post_save

    assert isinstance(post_save, tocsin.Signal) and isinstance(post_migrate, tocsin.Signal)
    call_command("migrate", verbosity=0)  # sends pre_migrate and post_migrate through tocsin
    # The app's migration and manage.py commands are in the wheel.
    from django.core.management import get_commands
    from django.db import connection

    assert "tocsin_outbox" in connection.introspection.table_names()
    commands = {"tocsin_worker", "tocsin_status", "tocsin_dead_letters"}
    assert commands <= set(get_commands()), get_commands()
    committed = []
    post_save.connect(
        lambda instance, **kwargs: committed.append(instance.name),
        sender=Group, weak=False, on_commit=True,
    )
    with transaction.atomic():
        Group.objects.create(name="editors")
        assert committed == [], committed
    assert committed == ["editors"], committed
    """,
    "sqlalchemy": """
    from sqlalchemy import String, create_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    from tocsin.contrib.sqlalchemy import enable_model_signals
    from tocsin.signals import post_save

    class Base(DeclarativeBase):
        pass

    class Todo(Base):
        __tablename__ = "todo"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(40))

    enable_model_signals(Base)
    saved, committed = [], []
    post_save.connect(
        lambda instance, created, **kwargs: saved.append((instance.text, created)),
        sender=Todo, weak=False,
    )
    post_save.connect(
        lambda instance, **kwargs: committed.append(instance.text),
        sender=Todo, weak=False, on_commit=True,
    )
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Todo(text="milk"))
        session.flush()
        assert saved == [("milk", True)] and committed == [], (saved, committed)
        session.commit()
    assert committed == ["milk"], committed
    assert "sqlalchemy.ext.asyncio" not in sys.modules  # it needs greenlet
    """,
    "otel": """
    from importlib.metadata import entry_points

    from tocsin import Signal, tracing
    from tocsin.contrib.otel import TocsinInstrumentor, instrument, uninstrument

    [entry_point] = entry_points(group="opentelemetry_instrumentor", name="tocsin")
    assert entry_point.load() is TocsinInstrumentor
    instrument()  # the API alone: spans that record nothing
    assert tracing.tracing_active()
    Signal().send(sender=None)
    uninstrument()
    assert not tracing.tracing_active()
    """,
    "redis": """
    from tocsin import Signal
    from tocsin.remote import MemoryTransport, Remote, RedisStreamsTransport, Worker

    assert "redis" in sys.modules  # RedisStreamsTransport imported redis-py
    placed = Signal()
    remote = Remote(MemoryTransport())
    remote.publish(placed)
    placed.send(sender=None, order=42)
    handled = []
    placed.connect(lambda order, **kwargs: handled.append(order), weak=False)
    assert Worker(remote).run_once() == 1
    assert handled == [42], handled
    """,
}
# Under opentelemetry-instrument, with the SDK: zero-code instrumentation finds tocsin.
ZERO_CODE = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tocsin import Signal, tracing

assert tracing.tracing_active(), "opentelemetry-instrument did not instrument tocsin"
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
placed = Signal()


def on_placed(sender, **kwargs):
    pass


placed.connect(on_placed)
placed.send(sender=None)
names = [span.name for span in exporter.get_finished_spans()]
assert names == ["__main__.on_placed", "send __main__.placed"], names
"""


class Dist(NamedTuple):
    sdist: Path
    wheel: Path


class Failed(Exception):
    """A command of an environment's set-up or check failed; the message is its output."""


def _run(command: list[str], cwd: Path) -> str:
    # PYTHONPATH would let a script import the checkout's tocsin instead of the wheel's;
    # TOCSIN_PURE_PYTHON would build, or use, the package otherwise than users do.
    dropped = {"PYTHONPATH", "PYTHONHOME", "TOCSIN_PURE_PYTHON"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise Failed(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return done.stdout


def _pip_install(python: Path, *requirements: str, cwd: Path) -> None:
    """pip install into the environment of *python*, by this pip (it has none of its own)."""
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "--no-input", *requirements], cwd)


def _check_extra(extra: str, wheel: Path, work: Path) -> None:
    """A fresh environment with the wheel and *extra* alone, and its script."""
    home = work / (extra or "no-extra")
    venv.create(home / "venv", with_pip=False)
    python = home / "venv" / "bin" / "python"
    _pip_install(python, f"{wheel}[{extra}]" if extra else str(wheel), cwd=home)
    script = home / "check.py"
    compiled = not wheel.name.endswith("-py3-none-any.whl")
    script.write_text(f"COMPILED_WHEEL = {compiled}\n" + COMMON + textwrap.dedent(SCRIPTS[extra]))
    _run([str(python), str(script)], home)
    if extra == "":
        listing = _run([str(home / "venv" / "bin" / "tocsin"), "list", "tocsin.signals"], home)
        assert "post_save" in listing, listing
    if extra == "otel":
        _pip_install(python, "opentelemetry-sdk", cwd=home)
        script.write_text(ZERO_CODE)
        instrument = home / "venv" / "bin" / "opentelemetry-instrument"
        _run([str(instrument), str(python), str(script)], home)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("distribution")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dist(work: Path) -> Dist:
    """The sdist, and the wheel built from it."""
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], work)
    [sdist] = out.glob("tocsin-*.tar.gz")
    [wheel] = out.glob("tocsin-*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="module")
def extras_checked(dist: Dist, work: Path) -> dict[str, str | None]:
    """Each public extra, and none, checked in parallel: extra -> what failed, or None."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(SCRIPTS)) as pool:
        futures = {extra: pool.submit(_check_extra, extra, dist.wheel, work) for extra in SCRIPTS}
    outcome: dict[str, str | None] = {}
    for extra, future in futures.items():
        error = future.exception()
        outcome[extra] = None if error is None else f"{type(error).__name__}: {error}"
    return outcome


@pytest.mark.parametrize("extra", list(SCRIPTS), ids=[e or "no-extra" for e in SCRIPTS])
def test_each_extra_works_alone_in_a_fresh_environment(
    extra: str, extras_checked: dict[str, str | None]
) -> None:
    """pip install 'tocsin[extra]' from the wheel, and nothing else, is enough to use it."""
    error = extras_checked[extra]
    assert error is None, error


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"tocsin-{tocsin.__version__}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text, headersonly=True)


def test_the_wheel_holds_the_library_and_its_licence_only(dist: Dist) -> None:
    """LICENSE and the package's templates are in the wheel; the Todo app, the tests
    and the benchmarks are not."""
    with zipfile.ZipFile(dist.wheel) as archive:
        names = archive.namelist()
    info = f"tocsin-{tocsin.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "tocsin/py.typed" in names
    assert "tocsin/contrib/django/templates/tocsin/panels/signals.html" in names  # the panel's
    tops = {name.split("/")[0] for name in names}
    assert tops == {"tocsin", info}, tops


def test_the_metadata_offers_the_public_extras_only(dist: Dist) -> None:
    """No todo, test or bench extra: development tools are dependency groups. The
    empty instruments extra is there for opentelemetry-instrument < 0.49b0, which
    fails without it."""
    metadata = _metadata(dist.wheel)
    assert sorted(metadata.get_all("Provides-Extra", [])) == sorted(PUBLIC_EXTRAS + EMPTY_EXTRAS)
    assert metadata["Version"] == tocsin.__version__
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
    assert sorted(urls) == ["Changelog", "Documentation", "Issues", "Source"]
    requires = metadata.get_all("Requires-Dist", [])
    assert all("extra ==" in requirement for requirement in requires), "no core dependencies"
    assert not any("instruments" in requirement for requirement in requires)


def test_the_wheel_declares_its_entry_points(dist: Dist) -> None:
    """The tocsin command, the pytest plugin and the OpenTelemetry instrumentor."""
    with zipfile.ZipFile(dist.wheel) as archive:
        text = archive.read(f"tocsin-{tocsin.__version__}.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\ntocsin = tocsin.__main__:main" in text
    assert "[pytest11]\ntocsin = tocsin.pytest_plugin" in text
    assert "[opentelemetry_instrumentor]\ntocsin = tocsin.contrib.otel:TocsinInstrumentor" in text


def test_the_sdist_holds_every_file_of_the_project(dist: Dist) -> None:
    """What the tests import or read (todo/, docs/, tests/_*.py...) is in the sdist,
    so that they run from it: it holds every file git tracks, and LICENSE."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of the project's files to compare with")
    tracked = _run([git, "ls-files", "-z"], ROOT).split("\0")
    with tarfile.open(dist.sdist) as archive:
        prefix = f"tocsin-{tocsin.__version__}/"
        held = {name.removeprefix(prefix) for name in archive.getnames()}
    missing = sorted(name for name in tracked if name and name not in held)
    assert not missing, f"not in the sdist: {missing}"
    assert {"LICENSE", "PKG-INFO", "pyproject.toml"} <= held


def test_the_wheel_holds_the_compiled_send_path_where_a_compiler_is_found(dist: Dist) -> None:
    """Built for this Python and platform, with the extension and not its C source; the
    sdist holds the source and the hook that builds it (as every tracked file)."""
    if speedups is None:
        # The editable install beside these tests was built by the same hook, with the same
        # compiler (or without one): without its extension, the wheel has none either.
        pytest.skip("this environment has no compiled build: the wheel is pure Python too")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert dist.wheel.name.startswith(f"tocsin-{tocsin.__version__}-{tag}-{tag}-"), dist.wheel
    with zipfile.ZipFile(dist.wheel) as archive:
        names = set(archive.namelist())
    assert f"tocsin/_speedups{sysconfig.get_config_var('EXT_SUFFIX')}" in names
    assert "tocsin/_speedups.pyi" in names  # what type checkers read
    assert not any(name.endswith(".c") for name in names)
    with tarfile.open(dist.sdist) as archive:
        held = set(archive.getnames())
    prefix = f"tocsin-{tocsin.__version__}/"
    assert {prefix + "src/tocsin/_speedups.c", prefix + "hatch_build.py"} <= held


@pytest.mark.parametrize(
    "env", [{"CC": "false"}, {"TOCSIN_PURE_PYTHON": "1"}], ids=["compiler-fails", "pure-asked"]
)
def test_without_the_compiled_path_the_wheel_is_pure_python(
    env: dict[str, str], work: Path
) -> None:
    """A compiler that fails, or TOCSIN_PURE_PYTHON=1: the build still succeeds, pure
    Python, and the reason is in the build's log."""
    out = work / f"wheel-{'-'.join(env)}"
    build_env = {**os.environ, **env}
    build_env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        cwd=work,
        env=build_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("tocsin-*.whl")
    assert wheel.name == f"tocsin-{tocsin.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        assert not any(
            "_speedups." in name and not name.endswith(".pyi") for name in archive.namelist()
        )
    reason = "compiled send path was not built" if "CC" in env else "TOCSIN_PURE_PYTHON is set"
    assert reason in done.stdout + done.stderr
