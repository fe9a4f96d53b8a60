"""What the benchmark scripts share, so that each keeps only its scenarios, its peers
and its targets, and they all time, compare, judge and report the same way.

* the facts of a run (date, commit, load, tocsin's send path), printed in its header and
  kept in its JSON file, so that every figure can be traced to a machine state;
* timing: a loop calibrated to a duration per sample, samples taken round-robin with the
  garbage collector off, so that drift and collections hit every case alike;
* statistics (best, median, ratios paired by round) and their formatting;
* aligned tables, the verdicts against an issue's target, and the summary's heading;
* the command line every script has (``--quick``, ``--json``, a config's counts), the
  header every script starts with (Python, the platform, the run's facts, its mode), and
  its end (the total time, the JSON file);
* child processes: servers on a loopback socket that announce their port, a GET to see
  they are up, waiting for them, their CPU time, stopping them; an HTTP/1.1 answer read
  for the load clients; SIGTERM that unwinds a run.

The scripts import it from their own folder (``python benchmarks/bench.py`` puts it on
``sys.path``); tests/test_bench_harness.py tests it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields, is_dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# A timed loop: runs its operation *loops* times (or loops x ops_per_loop), returns the ns.
Runner = Callable[[int], int]

# -- the facts of a run --------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def send_path(package: str = "tocsin") -> str:
    """ "compiled" or "pure": which send path the tocsin *package* uses (its _compiled
    module); "unknown" if it cannot be imported. bench.py also asks it of its copies."""
    try:
        compiled = importlib.import_module(f"{package}._compiled")
    except ImportError:
        return "unknown"
    return "pure" if compiled.speedups is None else "compiled"


def run_facts(paths: Sequence[str] = ("src", "benchmarks")) -> dict[str, Any]:
    """The date (UTC), the commit (and whether *paths* have uncommitted changes), Python,
    the platform, the load average, tocsin's version and send path."""
    status = _git("status", "--porcelain", "--", *paths)
    try:
        tocsin = metadata.version("tocsin")
    except metadata.PackageNotFoundError:
        tocsin = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": None if status is None else bool(status),
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "tocsin_version": tocsin,
        "tocsin_send_path": send_path(),
        "argv": sys.argv[1:],
    }


def print_run_facts(facts: dict[str, Any]) -> None:
    """One line: ``run      <date>, commit <commit>, load <1 5 15>; tocsin <v> (<path>)``."""
    commit = facts["commit"] or "unknown"
    if facts["uncommitted_changes"]:
        commit += " with uncommitted changes"
    load = facts["load_at_start"]
    shown = " ".join(f"{x:.2f}" for x in load) if load else "unknown"
    print(
        f"run      {facts['date']}, commit {commit}, load {shown}; "
        f"tocsin {facts['tocsin_version']} ({facts['tocsin_send_path']} send path)"
    )


def line(label: str, text: str) -> None:
    """A line of the header, or a note: *label* in the first 9 columns (``mode     ...``),
    none for a line that goes on from the one before."""
    print(f"{label:<8} {text}")


Line = tuple[str, str]  # (label, text), as line() prints it


def header(
    versions: dict[str, Any] | None = None,
    before: Iterable[Line] = (),
    after: Iterable[Line] = (),
    paths: Sequence[str] = ("src", "benchmarks"),
) -> dict[str, Any]:
    """Print the header every script starts with, and return its facts: Python's full
    version (the run's facts keep the short one), its implementation, the platform, its
    CPUs, and the run's facts under ``"run"``::

        Python   <version> (<implementation>)
        platform <platform>, <cpus> CPUs[; <name> <version>, ... from *versions*]
        <the lines *before*>
        run      <the run's facts, of *paths*>
        <the lines *after*: the mode, ...>
    """
    info: dict[str, Any] = {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    shown = ", ".join(f"{name} {number}" for name, number in (versions or {}).items())
    line("Python", f"{info['python']} ({info['implementation']})")
    line("platform", f"{info['platform']}, {info['cpus']} CPUs" + (f"; {shown}" if shown else ""))
    for label, text in before:
        line(label, text)
    info["run"] = run_facts(paths)
    print_run_facts(info["run"])
    for label, text in after:
        line(label, text)
    sys.stdout.flush()
    return info


def version(package: str) -> str | None:
    """*package*'s installed version, None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# -- timing --------------------------------------------------------------------------------


def timed(run: Runner, loops: int) -> int:
    """``run(loops)`` with the garbage collector off: a collection would land on
    whichever case happens to cross its threshold, not on the one that made the garbage."""
    gc.disable()
    try:
        return run(loops)
    finally:
        gc.enable()


def calibrate(run: Runner, sample_ns: int) -> int:
    """How many loops take about *sample_ns*: tenfold until a run takes a tenth of it,
    then scaled (the small runs double as warm-up)."""
    loops = 1
    while True:
        elapsed = max(1, timed(run, loops))
        if elapsed * 10 >= sample_ns:
            return max(1, round(loops * sample_ns / elapsed))
        loops *= 10


def round_order(items: Sequence[T], number: int, *, alternate: bool = True) -> Sequence[T]:
    """The order of round *number* (from 0): with *alternate*, every other round reversed,
    so that drift within a round hits the first and the last alike."""
    return items[::-1] if alternate and number % 2 else items


def turns(items: Sequence[T], rounds: int, *, alternate: bool = True) -> Iterator[T]:
    """Every item once per round, round after round, in round_order()."""
    for number in range(rounds):
        yield from round_order(items, number, alternate=alternate)


@dataclass
class TimedCase:
    """One timed loop of a scenario. *around* is held while it runs (receivers connected,
    say), so that a case's set-up never slows the others down."""

    name: str
    run: Runner
    ops_per_loop: int = 1
    around: Callable[[], AbstractContextManager[object]] = nullcontext


def sample_cases(
    cases: Sequence[TimedCase], repeats: int, sample_ns: int, *, alternate: bool = False
) -> dict[str, list[float]]:
    """Calibrate every case to *sample_ns*, then sample them in turns, *repeats* each:
    ns per operation of every sample, by case name."""
    gc.collect()
    loops = {}
    for case in cases:
        with case.around():
            loops[case.name] = calibrate(case.run, sample_ns)
    gc.collect()
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for case in turns(cases, repeats, alternate=alternate):
        with case.around():
            elapsed = timed(case.run, loops[case.name])
        samples[case.name].append(elapsed / (loops[case.name] * case.ops_per_loop))
    return samples


# -- statistics ----------------------------------------------------------------------------


def best(samples: Iterable[float], *, higher: bool = False) -> float:
    """The best sample: the least time (the one least disturbed), or the highest rate."""
    return max(samples) if higher else min(samples)


def median(samples: Iterable[float]) -> float:
    return float(statistics.median(samples))


def ratio(value: float | None, base: float | None) -> float | None:
    """*value* over *base*; None when either is missing or the base is not positive."""
    if value is None or base is None or base <= 0:
        return None
    return value / base


def paired_ratios(base: Sequence[float], other: Sequence[float]) -> list[float]:
    """Round by round, *other* over *base* of the same round (rounds with a zero base left
    out): drift between rounds cancels, which a ratio of two bests does not do."""
    return [o / b for b, o in zip(base, other, strict=True) if b]


# -- formatting and tables -----------------------------------------------------------------


def fmt(value: float | None, spec: str, *, missing: str = "-", suffix: str = "") -> str:
    """*value* formatted by *spec* with *suffix*; *missing* for None or NaN (no figure)."""
    if value is None or math.isnan(value):
        return missing
    return format(value, spec) + suffix


def fmt_ratio(value: float | None, digits: int = 2, *, missing: str = "-") -> str:
    """``1.23x``; *missing* when there is no ratio."""
    return fmt(value, f".{digits}f", missing=missing, suffix="x")


@dataclass(frozen=True)
class Column:
    """A table's column: its heading, its width, ``>`` (figures) or ``<`` (labels), and
    the blanks before it (*gap*: a left-aligned column after a figure needs some)."""

    title: str
    width: int
    align: str = ">"
    gap: int = 0


def columns(label: tuple[str, int], *figures: tuple[str, int]) -> list[Column]:
    """A table's usual columns: a label, left-aligned, then figures, right-aligned, each
    given as (heading, width)."""
    return [Column(*label, "<"), *(Column(title, width) for title, width in figures)]


def verdict_columns(target_width: int, gap: int = 2) -> list[Column]:
    """A summary's last columns: the target as the summary states it, then the verdict
    (PASS, MISS, n/a, or ``-`` on a row without a target)."""
    return [Column("target", target_width, "<", gap), Column("result", 0, "<")]


def format_row(columns: Sequence[Column], cells: Sequence[str], indent: str = "   ") -> str:
    """One line of a table: each cell padded to its column. A longer cell pushes the rest
    right rather than being cut, and a row may have fewer cells than columns."""
    line = "".join(
        " " * column.gap + f"{cell:{column.align}{column.width}}"
        for column, cell in zip(columns, cells, strict=False)
    )
    return (indent + line).rstrip()


def print_table(
    columns: Sequence[Column], rows: Iterable[Sequence[str]], indent: str = "   "
) -> None:
    """The columns' headings, then the rows, aligned."""
    print(format_row(columns, [column.title for column in columns], indent))
    for row in rows:
        print(format_row(columns, row, indent))
    sys.stdout.flush()


def heading(title: str) -> None:
    """A section of the report, after a blank line: ``== <title>``."""
    print()
    print(f"== {title}")


# -- targets -------------------------------------------------------------------------------


def verdict(measured: float | None, limit: float, *, at_least: bool = False) -> str:
    """PASS or MISS against an issue's target, *measured* at most *limit* (or at least,
    for rates and speed-ups); n/a when nothing was measured."""
    if measured is None:
        return "n/a"
    met = measured >= limit if at_least else measured <= limit
    return "PASS" if met else "MISS"


@dataclass(frozen=True)
class Target:
    """An issue's target for one figure, and how the summary states it."""

    limit: float
    at_least: bool = False
    unit: str = "x"

    @property
    def text(self) -> str:
        """``<= 1.10x``, ``>= 20,000/s``."""
        number = f"{self.limit:.2f}" if self.unit == "x" else f"{self.limit:,g}"
        return f"{'>=' if self.at_least else '<='} {number}{self.unit}"

    def verdict(self, measured: float | None) -> str:
        return verdict(measured, self.limit, at_least=self.at_least)


# -- the command line and the JSON file ----------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every script has: ``--quick`` (a smoke test's counts) and ``--json``."""
    made = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0] or None)
    made.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    made.add_argument("--json", metavar="PATH", type=Path, help="also write results here")
    return made


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero (a count of rounds, rows, events)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above zero (seconds)."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def configure(cfg: T, **given: Any) -> T:
    """*cfg* (a frozen dataclass: the quick or the default one) with what the command line
    gave; None means not given."""
    return replace(cfg, **{name: value for name, value in given.items() if value is not None})  # type: ignore[type-var]


def config_options(
    made: argparse.ArgumentParser, quick: T, default: T, **helps: str
) -> Callable[..., T]:
    """An option for each field of the config named in *helps* (``--peer-events`` for
    peer_events): a positive number of the field's type, its help saying the default.
    Returns how to make the run's config from the parsed options: the *quick* one with
    ``--quick``, else the *default*, with what these options (and the keywords) gave."""
    for name, what in helps.items():
        value = getattr(default, name)
        made.add_argument(
            f"--{name.replace('_', '-')}",
            type=positive_float if isinstance(value, float) else positive_int,
            help=f"{what} (default: {value:,g})",
        )

    def config(args: argparse.Namespace, **given: Any) -> T:
        options = {name: getattr(args, name) for name in helps}
        return configure(quick if args.quick else default, **options, **given)

    return config


def comma_list(
    made: argparse.ArgumentParser, option: str, text: str, known: Iterable[str]
) -> list[str]:
    """The names in a comma-separated option (``--only a,b``); exits with the known ones
    when one is unknown."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    choices = list(known)
    if unknown := sorted(set(names) - set(choices)):
        made.error(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
    return names


def as_json(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists: what json.dumps would make of them."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


def write_json(path: Path | None, mode: str, data: dict[str, Any]) -> None:
    """The run's JSON file, if *path*: the mode (quick or full), then the script's *data*,
    which has the facts of the run under ``"run"`` (every figure traceable to a commit and
    a machine state), its config, every sample and its summary."""
    if path is None:
        return
    if "run" not in data:
        raise ValueError("a run's JSON file keeps the facts of the run under 'run'")
    path.write_text(json.dumps(as_json({"mode": mode, **data}), indent=2) + "\n")
    print(f"results written to {path}")


def print_total(started: float, also: str = "") -> None:
    """The run's last line: ``(total <seconds> s<also>)``, *started* by time.perf_counter()."""
    print(f"\n(total {time.perf_counter() - started:.1f} s{also})")


def finish(
    started: float, path: Path | None, cfg: Any, info: dict[str, Any], also: str = "", **data: Any
) -> None:
    """The run's end: print_total(), then its JSON file, if *path*: the header's facts
    (*info*), the config *cfg* (a dataclass named for its mode), then the script's *data*."""
    print_total(started, also)
    write_json(path, cfg.name, {**info, "config": cfg, **data})


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file, as write_json() wrote it (what the smoke tests read)."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# -- child processes -----------------------------------------------------------------------


def importable(name: str) -> bool:
    """Whether module *name* is installed, without importing it (a peer may be slow to)."""
    return importlib.util.find_spec(name) is not None


def cpu_seconds(pid: int) -> float | None:
    """CPU time process *pid* has used so far, all threads (Linux: /proc); else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            parts = stat.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def listening_socket(host: str) -> socket.socket:
    """A TCP socket listening on a free port of *host*, for a server to take over.
    IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    return sock


def exit_when_orphaned() -> None:
    """In a child server: SIGTERM itself once its stdin closes, the parent gone, so that
    no server outlives a run that crashed."""

    def wait() -> None:
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, daemon=True).start()


def announce(sock: socket.socket, **facts: Any) -> None:
    """In a child server, once *sock* listens: one JSON line with its port, its pid and
    *facts*, for read_announcement(); then exit_when_orphaned()."""
    print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid(), **facts}), flush=True)
    exit_when_orphaned()


def start_child(args: Sequence[str], **popen: Any) -> subprocess.Popen[str]:
    """``python <args>`` (a child server: this script with ``--serve``), with pipes for its
    stdin (closing it stops an announce()d child) and its stdout (its announcement)."""
    return subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen
    )


def read_announcement(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any] | None:
    """What a child announce()d, or None if it said nothing in time."""
    said = read_line(proc, timeout)
    return dict(json.loads(said)) if said else None


def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> bytes:
    """The whole answer to ``GET <path>`` on a connection of its own (``Connection: close``):
    whether a server is up and runs what it should."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    answer = b""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request.encode())
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def exit_on_sigterm() -> None:
    """SIGTERM (timeout(1), a CI runner) unwinds the run as Ctrl-C does, as SystemExit(143):
    its ``finally`` blocks stop its children and clean up after it."""

    def stop(number: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, stop)


class ProtocolError(Exception):
    """An answer a benchmark's HTTP client cannot read."""


CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
# Errors a load's connection may end with: the load counts them and connects again.
CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 answer on a keep-alive connection: its status, its head and its body
    (Content-Length bytes; none for a 204 or a 304). Raises ProtocolError for any other
    answer, and one of CONNECTION_ERRORS as the connection fails."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ProtocolError(f"not an HTTP/1.1 answer: {head[:80]!r}")
    status = int(head[9:12])
    if length := CONTENT_LENGTH.search(head):
        body = await reader.readexactly(int(length.group(1)))
    elif status in (204, 304):
        body = b""
    else:
        raise ProtocolError(f"an answer without Content-Length: {head[:200]!r}")
    return status, head, body


def wait_for(done: Callable[[], bool], proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Whether *done* came true (asked every 50 ms) while child *proc* lived, within
    *timeout* seconds: a server up, its files written."""
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line a child prints (its port, say), or "" if none comes in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after *timeout* seconds; its pipes closed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
