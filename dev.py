#!/usr/bin/env python3
"""The project's commands; each sets up what it needs first.

    python3 dev.py run     set up .venv and run the main job, the Todo app
                           (python -m todo [--host H] [--port P])
    python3 dev.py test    set up and run the whole suite, several jobs at a time:
                           ruff, mypy --strict; the documentation site's strict
                           build; pytest on Python 3.11 plus 3.12 /
                           3.13 where installed, on the compiled send path
                           where it was built, and the library's tests once
                           more on the pure-Python path (the Todo app's, the
                           distribution's and the Django example's tests
                           (examples/django_todo, under pytest-django) on the
                           first Python only); the
                           integrations' tests with their dependencies at the
                           lowest versions allowed (.venv-lowest); Django's own
                           test suites with every Django signal on tocsin
                           (Django 5.2 on 3.11, 6.1 on 3.12+)
    python3 dev.py test-lowest [PYTEST ARGS]
                           that last run alone
    python3 dev.py bench   run the benchmarks against django.dispatch, blinker, psygnal
                           (its set-up also installs the bench group: RQ and Celery,
                           the peers of benchmarks/bench_remote.py)
    python3 dev.py docs    serve the documentation site on http://127.0.0.1:8001,
                           rebuilt as docs/ and the docstrings change (mkdocs serve);
                           `docs build` builds it once into site/, strictly

Needs only Python 3.11+. Virtual environments live in .venv (the Python that
runs this script) and .venv-3.12 / .venv-3.13 (found on PATH or under pyenv);
each holds tocsin, editable, and the dependency groups of pyproject.toml that
its commands need: todo for run, test and docs for test (test includes todo).
.venv-lowest holds the integrations' dependencies at their floors (uv, 3.11).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
EXTRA_PYTHONS = ("3.12", "3.13")
# Run on the first Python only: the Todo app's tests (an application, served by
# one Python) and the distribution's (the wheel is the same on every Python).
FIRST_PYTHON_ONLY = ("tests/todo", "tests/test_bench_todo.py", "tests/test_distribution.py")
# The Django example (a project of its own, tested under pytest-django, about 2 s),
# on the first Python only too: its own job, as its pytest.ini is not the repository's.
DJANGO_EXAMPLE = "examples/django_todo"
CHROMIUM = "/usr/bin/chromium"  # Debian's, for the Todo app's browser test
# test_lowest(): the public extras whose dependencies are installed at their floors,
# and the tests of the code that uses them (the Remote's fault test that kills
# workers 5 times over, 45 s, tests the worker's policy, not redis-py: left out).
LOWEST_EXTRAS = ("django", "sqlalchemy", "otel", "redis")
LOWEST_TESTS = (
    "tests/contrib/django",
    "tests/contrib/sqlalchemy",
    "tests/contrib/test_otel.py",
    "tests/test_tracing.py",
    "tests/remote",
    "tests/test_docs.py",
    "--deselect=tests/remote/test_faults.py"
    "::test_only_events_that_kill_their_worker_are_dead_lettered_as_poison",
)
DOCS_ADDRESS = "127.0.0.1:8001"  # beside the Todo app's 8000
# Material for MkDocs prints a notice about MkDocs 2 on every build; the docs group pins mkdocs<2.
DOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by any python3
        sys.exit(f"tocsin needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    command = argv[1] if len(argv) > 1 else "help"
    commands = {
        "run": run_app,
        "test": test,
        "test-lowest": test_lowest,
        "bench": bench,
        "docs": docs,
    }
    if command in commands:
        return commands[command](argv[2:])
    print(__doc__)
    return 0 if command in {"help", "-h", "--help"} else 2


def run_app(args: list[str]) -> int:
    python = setup(ROOT / ".venv", sys.executable, groups=("todo",))
    return serve([python, "-m", "todo", *args])


def bench(args: list[str]) -> int:
    python = setup(ROOT / ".venv", sys.executable, groups=("test", "bench"))
    return run([python, str(ROOT / "benchmarks" / "bench.py"), *args])


def docs(args: list[str]) -> int:
    python = setup(ROOT / ".venv", sys.executable, groups=("docs",))
    if args[:1] == ["build"]:
        return build_docs(python)
    os.environ.update(DOCS_ENV, TOCSIN_DOCS_URL=f"http://{DOCS_ADDRESS}/")
    return serve([python, "-m", "mkdocs", "serve", "--dev-addr", DOCS_ADDRESS, *args])


def run(cmd: list[str], **kwargs: object) -> int:
    print("+", " ".join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd))
    sys.stdout.flush()
    return subprocess.call(cmd, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def serve(cmd: list[str]) -> int:
    """Run a server until it stops; Ctrl+C reaches it too, and it shuts down cleanly."""
    print("+", " ".join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd))
    sys.stdout.flush()
    with subprocess.Popen(cmd, cwd=ROOT) as process:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue  # the server got the signal as well, and is stopping


def setup(venv: Path, base_python: str, groups: tuple[str, ...] = ("test",)) -> str:
    """Create *venv* with *base_python*; install tocsin, editable, and the
    dependency *groups* of pyproject.toml (PEP 735, pip's ``--group``: pip 25.1+).

    The stamp holds the hash of what the install is made from (_install_hash())
    and the groups installed with it: nothing is installed while they cover
    *groups*; a change installs again (which rebuilds the compiled send path).
    """
    python = venv / "bin" / "python"
    stamp = venv / ".tocsin-installed"
    wanted = _install_hash()
    if python.exists() and stamp.exists():
        installed, _, names = stamp.read_text().partition("\n")
        there = set(filter(None, names.split(",")))
        if installed == wanted and set(groups) <= there:
            return str(python)
        if installed == wanted:
            groups = tuple(sorted({*groups, *there}))  # keep what is there
    if not python.exists():
        subprocess.check_call([base_python, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"])  # --group needs pip 25.1
    options = [arg for group in groups for arg in ("--group", group)]
    # --group reads the pyproject.toml of the current directory: ROOT's.
    subprocess.check_call([*pip, "-e", str(ROOT), *options], cwd=ROOT)
    stamp.write_text(f"{wanted}\n{','.join(sorted(groups))}")
    return str(python)


# What an editable install is built from: the project's metadata, and the compiled
# send path (hatch_build.py builds src/tocsin/_speedups.c in place).
INSTALL_INPUTS = ("pyproject.toml", "hatch_build.py", "src/tocsin/_speedups.c")


def _install_hash() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return digest.hexdigest()


def compiled(python: str) -> bool:
    """Whether *python* imports tocsin with its compiled send path (tocsin._compiled)."""
    check = "import tocsin._compiled as c; print(c.speedups is not None)"
    env = {k: v for k, v in os.environ.items() if k != "TOCSIN_PURE_PYTHON"}
    out = subprocess.run(
        [python, "-c", check], capture_output=True, text=True, env=env, check=False
    )
    return out.stdout.strip() == "True"


def docs_command(python: str, strict: bool = True) -> list[str]:
    """Build the documentation site into site/ with *python*'s MkDocs (the ``docs``
    dependency group, see setup()).

    Strict, by default: a warning fails the build, so a broken link or anchor, a
    docstring reference to a name tocsin does not have, or an exported name without
    a docstring (which the API reference would leave out) is an error.
    """
    command = [python, "-m", "mkdocs", "build", "--clean", "--site-dir", str(ROOT / "site")]
    return [*command, "--strict"] if strict else command


def build_docs(python: str, strict: bool = True) -> int:
    started = time.monotonic()
    code = run(docs_command(python, strict), env={**os.environ, **DOCS_ENV})
    print(f"(documentation site built in {time.monotonic() - started:.1f} s: site/index.html)")
    return code


def find_python(version: str) -> str | None:
    found = shutil.which(f"python{version}")
    if found and _works(found):
        return found
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run(
            [pyenv, "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        for name in sorted((v for v in out if v.startswith(version + ".")), reverse=True):
            prefix = subprocess.run(
                [pyenv, "prefix", name], capture_output=True, text=True, check=False
            ).stdout.strip()
            candidate = Path(prefix) / "bin" / "python3"
            if candidate.exists() and _works(str(candidate)):
                return str(candidate)
    return None


def _works(python: str) -> bool:
    return (
        subprocess.run([python, "-c", "import venv"], capture_output=True, check=False).returncode
        == 0
    )


def test(pytest_args: list[str]) -> int:
    """Lint, type-check, build the docs and run every test job, several at a time."""
    os.environ.update(DOCS_ENV)  # for the jobs
    ensure_postgres()
    ensure_redis()
    ensure_chromium()
    first = f"{sys.version_info.major}.{sys.version_info.minor}"
    bases = {first: sys.executable}
    for version in EXTRA_PYTHONS:
        base = find_python(version) if version != first else None
        if base is not None:
            bases[version] = base
        elif version != first:
            print(f"(Python {version} not found: its test run is skipped)")
    # Every environment at once: pip and uv spend most of their time downloading.
    with ThreadPoolExecutor() as pool:
        pending = {
            version: pool.submit(
                setup,
                ROOT / (".venv" if version == first else f".venv-{version}"),
                base,
                ("test", "docs") if version == first else ("test",),
            )
            for version, base in bases.items()
        }
        lowest = None if pytest_args else pool.submit(setup_lowest, ROOT / ".venv-lowest")
        pythons = {version: future.result() for version, future in pending.items()}
        lowest_python = None if lowest is None else lowest.result()

    reports = ROOT / ".reports"
    reports.mkdir(exist_ok=True)
    jobs = test_jobs(pythons, first, lowest_python, pytest_args, reports)
    failures = run_jobs(jobs, reports)
    if lowest is None:
        print("(pytest arguments given: the lowest-versions run was left out)")
    elif lowest_python is None:
        failures.append("setting up the lowest versions")

    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for job in jobs:
        if job.report is not None:
            for key, value in _count(job.report).items():
                totals[key] += value
    print()
    print(f"Python versions tested: {', '.join(pythons)}")
    if failures:
        print("FAILED: " + "; ".join(failures))
    print(
        f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped"
    )
    return 1 if failures else 0


def test_jobs(
    pythons: dict[str, str],
    first: str,
    lowest: str | None,
    pytest_args: list[str],
    reports: Path,
) -> list[Job]:
    """The test command's jobs, the longest first (the short ones fill the gaps at
    the end). The first Python's suite is two jobs, the library's and the
    application's, so that no single job sets the command's duration."""
    python = pythons[first]
    jobs: list[Job] = []
    # Each environment runs tocsin compiled where its install built the compiled send
    # path (a C compiler was found), and says so to the tests (tests/test_compiled.py).
    venvs = {*pythons.values(), *([lowest] if lowest else [])}
    paths = {venv: "compiled" if compiled(venv) else "pure" for venv in venvs}

    def pytest(name: str, venv_python: str, slug: str, args: list[str], pure: bool = False) -> None:
        report = reports / f"pytest-{slug}.xml"
        command = [venv_python, "-m", "pytest", f"--junitxml={report}", "-p", "no:cacheprovider"]
        path = "pure" if pure else paths[venv_python]
        env = {"TOCSIN_TEST_PATH": path, **({"TOCSIN_PURE_PYTHON": "1"} if pure else {})}
        jobs.append(Job(f"{name} ({path})", [[*command, *args]], report, env))

    library_only = [f"--ignore={path}" for path in FIRST_PYTHON_ONLY]
    for version, venv_python in pythons.items():
        if version != first:
            pytest(f"pytest on Python {version}", venv_python, version, library_only + pytest_args)
        elif pytest_args:
            pytest(f"pytest on Python {version}", venv_python, version, pytest_args)
        else:
            pytest(f"pytest on Python {version}: the library", venv_python, version, library_only)
    if paths[python] == "compiled":
        # The pure-Python path is the reference: the whole library suite on it too.
        args = pytest_args or library_only
        pytest(f"pytest on Python {first}", python, f"{first}-pure", args, pure=True)
    if not pytest_args:
        app = [*FIRST_PYTHON_ONLY]
        pytest(f"pytest on Python {first}: the Todo app, the distribution", python, "app", app)
        # Under pytest-django, with its own pytest.ini (a Django project's tests)
        pytest(
            f"pytest on Python {first}: the Django example",
            python,
            "django-example",
            [DJANGO_EXAMPLE],
        )
    if lowest is not None:
        pytest("pytest at the lowest versions", lowest, "lowest", [*LOWEST_TESTS])
    if not pytest_args:
        jobs.extend(django_suite_jobs(pythons))
    jobs.append(
        Job(
            "lint",
            [
                [python, "-m", "ruff", "check", "."],
                [python, "-m", "ruff", "format", "--check", "."],
                [python, "-m", "mypy"],
            ],
        )
    )
    jobs.append(Job("docs: mkdocs build --strict", [docs_command(python)]))
    return jobs


def django_suite_jobs(pythons: dict[str, str]) -> list[Job]:
    """Django's own test suites with every Django signal on tocsin
    (tests/contrib/django/django_suite.py), once per Django series that the test
    group pins (pyproject.toml): 5.2 on Python 3.11, 6.1 on 3.12+ (its lowest
    Python here).
    About 25 s each, on one core; the first run downloads Django's sdist."""
    series: dict[str, tuple[str, str]] = {}
    for version, venv_python in sorted(pythons.items(), key=lambda item: _version_key(item[0])):
        django = "5.2" if _version_key(version) < (3, 12) else "6.1"
        series.setdefault(django, (version, venv_python))
    return [
        Job(
            f"Django {django}'s own suites on tocsin (Python {version})",
            [[venv_python, "tests/contrib/django/django_suite.py"]],
        )
        for django, (version, venv_python) in series.items()
    ]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class Job:
    """Commands run one after the other (stopping at the first failure), output to a log."""

    def __init__(
        self,
        name: str,
        commands: list[list[str]],
        report: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.commands = commands
        self.report = report
        self.env = env or {}


# How many jobs run at once: the suites wait on servers, browsers and child
# processes for a good part of their time, so one more than the cores keeps
# them busy without making the timing-sensitive tests (the Todo app's abuse
# test) miss their bounds.
SLOTS = (os.cpu_count() or 2) + 1


def run_jobs(jobs: list[Job], logs: Path) -> list[str]:
    """Run *jobs*, SLOTS at a time; print each one's end, and the end of the log of
    one that failed. Returns the names of those that failed."""
    pending = list(jobs)
    running: dict[Job, tuple[subprocess.Popen[bytes], float, Any]] = {}
    failures: list[str] = []
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < SLOTS:
            job = pending.pop(0)
            log = (logs / f"{_slug(job.name)}.log").open("wb")
            print(f"+ {job.name} (log: {os.path.relpath(log.name, ROOT)})", flush=True)
            running[job] = (_launch(job, log), time.monotonic(), log)
        time.sleep(0.2)
        for job, (process, began, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[job]
            log.close()
            took = time.monotonic() - began
            if process.returncode == 0:
                print(f"  {job.name}: passed in {took:.0f} s", flush=True)
                continue
            failures.append(f"{job.name} (exit {process.returncode})")
            tail = Path(log.name).read_text(errors="replace").splitlines()[-80:]
            print(
                f"  {job.name}: FAILED (exit {process.returncode}) in {took:.0f} s; the log ends:"
            )
            print("\n".join(f"    {line}" for line in tail), flush=True)
    print(f"(all jobs: {time.monotonic() - started:.0f} s)")
    return failures


def _launch(job: Job, log: Any) -> subprocess.Popen[bytes]:
    """One shell-free chain of the job's commands: each runs if the previous passed."""
    script = "\n".join(
        [
            "import subprocess, sys",
            f"for command in {job.commands!r}:",
            "    print('+', ' '.join(command), flush=True)",
            "    code = subprocess.call(command)",
            "    if code:",
            "        sys.exit(code)",
        ]
    )
    env = {**os.environ, **job.env}
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=log, env=env
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in name.lower())


def test_lowest(pytest_args: list[str]) -> int:
    """Run the integrations' tests with their dependencies at the lowest versions allowed.

    In .venv-lowest, on Python 3.11: uv resolves the public extras (LOWEST_EXTRAS)
    with ``--resolution lowest-direct``, and their direct dependencies are held at
    the versions found (sqlalchemy 2.0.30, ...) while the test tools install at
    their usual versions: from the ``test`` dependency group if pyproject.toml has
    one, else from the ``test`` extra. A test tool that needs a newer version of a
    floored dependency makes the install fail, on purpose: raise the floor or the tool.
    *pytest_args*, when given, replace LOWEST_TESTS (``tests/remote -x``, say).
    """
    python = setup_lowest(ROOT / ".venv-lowest")
    if python is None:
        return 1
    ensure_postgres()
    ensure_redis()
    reports = ROOT / ".reports"
    reports.mkdir(exist_ok=True)
    report = reports / "pytest-lowest.xml"
    code = run(
        [python, "-m", "pytest", f"--junitxml={report}", "-p", "no:cacheprovider"]
        + (pytest_args or list(LOWEST_TESTS))
    )
    totals = _count(report)
    print()
    print(f"lowest versions: {(ROOT / '.venv-lowest' / 'floors.txt').read_text().split()}")
    print(
        f"tests: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed, "
        f"{totals.get('skipped', 0)} skipped"
    )
    return code


def setup_lowest(venv: Path) -> str | None:
    """Create *venv* with the floors of LOWEST_EXTRAS and the test tools; its Python.

    Reinstalled whenever what it is made from changes (a stamp holds _install_hash()).
    """
    python = venv / "bin" / "python"
    stamp = venv / ".tocsin-installed"
    wanted = _install_hash()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    base = sys.executable if sys.version_info[:2] == (3, 11) else find_python("3.11")
    if base is None:
        print("(Python 3.11 not found: the lowest-versions run needs it)")
        return None
    if venv.exists():
        shutil.rmtree(venv)  # start clean: an upgrade left behind would hide a floor
    subprocess.check_call([base, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip", "uv"])
    uv = [str(venv / "bin" / "uv"), "pip"]
    pyproject = ROOT / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())
    extras = project["project"]["optional-dependencies"]
    compiled = subprocess.run(
        [*uv, "compile", str(pyproject), "--python", str(python), "--resolution"]
        + ["lowest-direct", "--no-header", "--no-annotate", "--quiet"]
        + [f"--extra={extra}" for extra in LOWEST_EXTRAS],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    # Hold only the extras' own requirements; what they depend on in turn may
    # move, as it would for a user who asks for these versions.
    direct = {_normalize(req) for extra in LOWEST_EXTRAS for req in extras[extra]}
    floors = [pin for pin in compiled if _normalize(pin) in direct]
    (venv / "floors.txt").write_text("\n".join(floors) + "\n")
    if "test" in project.get("dependency-groups", {}):
        tools = [f"--group={pyproject}:test"]
        to_install = ",".join(LOWEST_EXTRAS)
    else:
        tools = []
        to_install = ",".join((*LOWEST_EXTRAS, "test"))
    install = [*uv, "install", "--quiet", "--python", str(python), "--constraints"]
    code = run([*install, str(venv / "floors.txt"), "-e", f".[{to_install}]", *tools])
    if code != 0:
        print(
            f"The test tools cannot be installed beside the floors {', '.join(floors)}: "
            f"raise the floor in pyproject.toml, or the test tool's range."
        )
        return None
    stamp.write_text(wanted)
    return str(python)


def _normalize(requirement: str) -> str:
    """The PEP 503 name of *requirement* (``SQLAlchemy[asyncio]>=2`` -> ``sqlalchemy``)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL cluster if it is installed and stopped.

    The SQLAlchemy tests run against it (127.0.0.1:5432, database ``test``);
    without it they are skipped, unless TOCSIN_REQUIRE_SERVICES=1 (CI) makes
    that a failure.
    """
    if _listening(5432):
        return
    clusters = Path("/etc/postgresql")
    starter = shutil.which("pg_ctlcluster")
    if starter is None or not clusters.is_dir():
        print("(PostgreSQL is not installed here: its tests are skipped)")
        return
    for version in sorted(v.name for v in clusters.iterdir()):
        run([starter, "--skip-systemctl-redirect", version, "main", "start"])
    for _ in range(30):
        if _listening(5432):
            return
        time.sleep(0.5)
    print("(PostgreSQL did not start: its tests will be skipped or fail)")


def ensure_redis() -> None:
    """Start a Redis server on 127.0.0.1:6379 if none is listening.

    The remote-receiver tests (transports, workers, fault tests) run against
    it; a missing ``redis-server`` is installed with apt-get when we may.
    Without it those tests are skipped, unless TOCSIN_REQUIRE_SERVICES=1 (CI)
    makes that a failure.
    """
    if _listening(6379):
        return
    server = shutil.which("redis-server")
    apt_get = shutil.which("apt-get")
    if server is None and apt_get is not None and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if run([apt_get, "install", "-y", "-q", "redis-server"], env=env) != 0:
            run([apt_get, "update", "-q"], env=env)
            run([apt_get, "install", "-y", "-q", "redis-server"], env=env)
        server = shutil.which("redis-server")
    if server is None:
        print("(Redis is not installed here: its tests are skipped)")
        return
    flags = ["--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]
    run([server, "--daemonize", "yes", *flags])
    for _ in range(30):
        if _listening(6379):
            return
        time.sleep(0.2)
    print("(Redis did not start: its tests will be skipped or fail)")


def ensure_chromium() -> None:
    """Install Debian's Chromium and its driver if they are missing and we may.

    The Todo app's browser test drives /usr/bin/chromium through Playwright
    (no browser download); without it that test is skipped, unless
    TOCSIN_REQUIRE_SERVICES=1 (CI) makes that a failure.
    """
    if Path(CHROMIUM).exists():
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        print(f"(Chromium is not installed at {CHROMIUM}: the browser test is skipped)")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-q", "chromium", "chromium-driver"]
    if run(install, env=env) != 0:
        # a fresh machine may have no package lists yet
        run([apt_get, "update", "-q"], env=env)
        run(install, env=env)
    if not Path(CHROMIUM).exists():
        print("(Chromium could not be installed: the browser test will be skipped or fail)")


def _count(report: Path) -> dict[str, int]:
    if not report.exists():
        return {}
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {"passed": tests - failed - skipped, "failed": failed, "skipped": skipped}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
