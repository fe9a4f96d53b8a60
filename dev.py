#!/usr/bin/env python3
"""The project's commands; each sets up what it needs first.

    python3 dev.py run     set up .venv and run the main job, the Todo app
                           (python -m todo [--host H] [--port P])
    python3 dev.py test    set up and run the whole suite: ruff, mypy --strict, and
                           pytest on Python 3.11 plus 3.12 / 3.13 where installed
                           (the Todo app's tests on the first Python only)
    python3 dev.py bench   run the benchmarks against django.dispatch, blinker, psygnal
                           (its set-up also installs the bench extra: RQ and Celery,
                           the peers of benchmarks/bench_remote.py)
    python3 dev.py docs    serve the documentation site on http://127.0.0.1:8001,
                           rebuilt as docs/ and the docstrings change (mkdocs serve);
                           `docs build` builds it once into site/, strictly

Needs only Python 3.11+. Virtual environments live in .venv (the Python that
runs this script) and .venv-3.12 / .venv-3.13 (found on PATH or under pyenv).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXTRA_PYTHONS = ("3.12", "3.13")
APP_TESTS = ("tests/todo", "tests/test_bench_todo.py")  # run on the first Python only
CHROMIUM = "/usr/bin/chromium"  # Debian's, for the Todo app's browser test
DOCS_ADDRESS = "127.0.0.1:8001"  # beside the Todo app's 8000
# Material for MkDocs prints a notice about MkDocs 2 on every build; the docs group pins mkdocs<2.
DOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by any python3
        sys.exit(f"tocsin needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    command = argv[1] if len(argv) > 1 else "help"
    if command == "run":
        python = setup(ROOT / ".venv", sys.executable)
        return serve([python, "-m", "todo", *argv[2:]])
    if command == "test":
        return test(argv[2:])
    if command == "bench":
        python = setup(ROOT / ".venv", sys.executable, extras=("test", "bench"))
        return run([python, str(ROOT / "benchmarks" / "bench.py"), *argv[2:]])
    if command == "docs":
        python = setup(ROOT / ".venv", sys.executable)
        if argv[2:3] == ["build"]:
            return build_docs(python)
        install_docs_tools(python)
        os.environ.update(DOCS_ENV, TOCSIN_DOCS_URL=f"http://{DOCS_ADDRESS}/")
        return serve([python, "-m", "mkdocs", "serve", "--dev-addr", DOCS_ADDRESS, *argv[2:]])
    print(__doc__)
    return 0 if command in {"help", "-h", "--help"} else 2


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


def setup(venv: Path, base_python: str, extras: tuple[str, ...] = ("test",)) -> str:
    """Create *venv* with *base_python* and install tocsin with *extras*.

    The stamp holds the hash of pyproject.toml and the extras installed with it
    (a stamp of the hash alone is from before extras were recorded: "test").
    """
    python = venv / "bin" / "python"
    stamp = venv / ".tocsin-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if python.exists() and stamp.exists():
        installed, sep, names = stamp.read_text().partition("\n")
        if installed == wanted and set(extras) <= set(names.split(",") if sep else ["test"]):
            return str(python)
        if installed == wanted and sep:
            extras = tuple(sorted({*extras, *names.split(",")}))  # keep what is there
    if not python.exists():
        subprocess.check_call([base_python, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"])
    subprocess.check_call([*pip, "-e", f"{ROOT}[{','.join(extras)}]"])
    stamp.write_text(f"{wanted}\n{','.join(sorted(extras))}")
    return str(python)


def docs_requirements() -> list[str]:
    """The ``docs`` dependency group of pyproject.toml: what builds the site."""
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as file:
        group = tomllib.load(file)["dependency-groups"]["docs"]
    return [item for item in group if isinstance(item, str)]


def install_docs_tools(python: str) -> None:
    """Install the ``docs`` dependency group into *python*'s environment, once.

    The stamp beside the interpreter's environment records what was installed, so
    that a changed group is installed again and an unchanged one costs nothing.
    """
    requirements = docs_requirements()
    stamp = Path(python).parent.parent / ".tocsin-docs-installed"
    wanted = "\n".join(requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, *requirements])
    stamp.write_text(wanted)


def build_docs(python: str, strict: bool = True) -> int:
    """Build the documentation site into site/ with *python*'s MkDocs; return its exit code.

    Strict, by default: a warning fails the build, so a broken link or anchor, a
    docstring reference to a name tocsin does not have, or an exported name without
    a docstring (which the API reference would leave out) is an error. The docs
    tools are installed first if they are missing (see install_docs_tools()).
    """
    install_docs_tools(python)
    command = [python, "-m", "mkdocs", "build", "--clean", "--site-dir", str(ROOT / "site")]
    started = time.monotonic()
    code = run([*command, "--strict"] if strict else command, env={**os.environ, **DOCS_ENV})
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
    python = setup(ROOT / ".venv", sys.executable)
    failures: list[str] = []
    if run([python, "-m", "ruff", "check", "."]) != 0:
        failures.append("ruff check")
    if run([python, "-m", "ruff", "format", "--check", "."]) != 0:
        failures.append("ruff format")
    if run([python, "-m", "mypy"]) != 0:
        failures.append("mypy --strict")

    ensure_postgres()
    ensure_redis()
    ensure_chromium()
    interpreters = [(f"{sys.version_info.major}.{sys.version_info.minor}", python)]
    for version in EXTRA_PYTHONS:
        if version == interpreters[0][0]:
            continue
        base = find_python(version)
        if base is None:
            print(f"(Python {version} not found: its test run is skipped)")
            continue
        interpreters.append((version, setup(ROOT / f".venv-{version}", base)))

    reports = ROOT / ".reports"
    reports.mkdir(exist_ok=True)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for index, (version, venv_python) in enumerate(interpreters):
        report = reports / f"pytest-{version}.xml"
        # The library's suite runs on every Python; the Todo app's (an application,
        # served by one Python: a third of the suite's time) on the first only.
        only_library = [f"--ignore={path}" for path in APP_TESTS] if index else []
        code = run(
            [
                venv_python,
                "-m",
                "pytest",
                f"--junitxml={report}",
                "-p",
                "no:cacheprovider",
                *only_library,
                *pytest_args,
            ]
        )
        if code != 0:  # includes 5: no tests collected
            failures.append(f"pytest on Python {version} (exit {code})")
        for key, value in _count(report).items():
            totals[key] += value

    print()
    print(f"Python versions tested: {', '.join(v for v, _ in interpreters)}")
    if failures:
        print("FAILED: " + "; ".join(failures))
    print(
        f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped"
    )
    return 1 if failures else 0


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
