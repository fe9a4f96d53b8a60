"""benchmarks/_harness.py, the pieces every benchmark script shares, tested directly.

Each script's smoke test (tests/test_bench*.py) runs the script; these tests check the
pieces themselves with fake timed loops (whose "elapsed" time is made up), so that they
assert behaviour, never a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from _bench import ROOT, harness, run_quick

# -- the facts of a run ------------------------------------------------------------------


def test_the_facts_name_the_date_the_commit_and_the_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    facts = harness.run_facts()
    when = datetime.datetime.fromisoformat(facts["date"])
    assert when.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 60
    git = ["git", "rev-parse", "--short", "HEAD"]
    head = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False)
    assert facts["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert facts["tocsin_send_path"] in ("compiled", "pure")
    assert facts["python_version"] == ".".join(map(str, sys.version_info[:3]))
    harness.print_run_facts(facts)
    line = capsys.readouterr().out
    assert line.startswith(f"run      {facts['date']}, commit {facts['commit']}")
    assert f"({facts['tocsin_send_path']} send path)" in line


def test_the_header_says_python_the_platform_then_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    info = harness.header(
        {"tocsin": "1.0", "Peer": None},
        before=[("redis", "server 7")],
        after=[("mode", "quick: tiny"), ("", "and more")],
        paths=("src",),
    )
    out = capsys.readouterr().out.splitlines()
    assert [text[:9] for text in out] == [
        "Python   ",
        "platform ",
        "redis    ",
        "run      ",
        "mode     ",
        "         ",
    ]
    assert out[0] == f"Python   {info['python']} ({info['implementation']})"
    assert out[1] == f"platform {info['platform']}, {info['cpus']} CPUs; tocsin 1.0, Peer None"
    assert out[2:] == [out[2], out[3], "mode     quick: tiny", "         and more"]
    assert out[2] == "redis    server 7"
    assert info["run"]["argv"] == sys.argv[1:]
    assert out[3].startswith(f"run      {info['run']['date']}, commit ")
    harness.header()  # no versions: the platform line ends with the CPUs
    assert capsys.readouterr().out.splitlines()[1].endswith(" CPUs")


def test_a_scripts_json_carries_the_facts(tmp_path: Path) -> None:
    run = run_quick("bench.py", tmp_path, "--only", "send-0")  # checks the facts are kept
    assert run.data["run"]["argv"][:3] == ["--quick", "--only", "send-0"]


# -- timing --------------------------------------------------------------------------------


class FakeLoop:
    """A timed loop whose every operation "takes" *ns*: it reports loops x ns, and keeps
    each call's loop count and whether the garbage collector was on."""

    def __init__(self, ns: int, log: list[str] | None = None, name: str = "") -> None:
        self.ns = ns
        self.calls: list[int] = []
        self.gc_enabled: list[bool] = []
        self.log = log if log is not None else []
        self.name = name

    def __call__(self, loops: int) -> int:
        self.calls.append(loops)
        self.gc_enabled.append(gc.isenabled())
        self.log.append(self.name)
        return loops * self.ns


def test_timed_runs_with_the_garbage_collector_off_and_turns_it_back_on() -> None:
    loop = FakeLoop(5)
    assert harness.timed(loop, 3) == 15
    assert loop.gc_enabled == [False]
    assert gc.isenabled()

    def failing(loops: int) -> int:
        raise RuntimeError("the loop failed")

    with pytest.raises(RuntimeError):
        harness.timed(failing, 1)
    assert gc.isenabled()


@pytest.mark.parametrize(("ns", "sample_ns"), [(1, 1_000_000), (7, 80_000_000), (50_000, 10_000)])
def test_calibration_converges_on_the_duration_of_a_sample(ns: int, sample_ns: int) -> None:
    loop = FakeLoop(ns)
    loops = harness.calibrate(loop, sample_ns)
    # Tenfold steps (1, 10, 100...) until a run takes a tenth of a sample, then scaled.
    assert loop.calls == [10**n for n in range(len(loop.calls))]
    assert loop.calls[-1] * ns * 10 >= sample_ns
    assert loops == max(1, round(sample_ns / ns))
    assert all(on is False for on in loop.gc_enabled)


def test_turns_alternate_the_order_of_every_other_round() -> None:
    assert "".join(harness.turns("abc", 3)) == "abccbaabc"
    assert "".join(harness.turns("abc", 3, alternate=False)) == "abcabcabc"
    assert "".join(harness.round_order("abc", 1)) == "cba"
    assert list(harness.turns("abc", 0)) == []


def test_cases_are_calibrated_then_sampled_round_robin_each_within_its_set_up() -> None:
    log: list[str] = []

    @contextmanager
    def connected(name: str) -> Iterator[None]:
        log.append(f"+{name}")
        yield
        log.append(f"-{name}")

    loops = {name: FakeLoop(ns, log, name) for name, ns in (("a", 100), ("b", 1_000))}
    cases = [
        harness.TimedCase("a", loops["a"], around=lambda: connected("a")),
        harness.TimedCase("b", loops["b"], ops_per_loop=10, around=lambda: connected("b")),
    ]
    samples = harness.sample_cases(cases, repeats=3, sample_ns=1_000_000)

    # a: 1, 10, 100 and 1,000 loops (100 us, a tenth of a sample); b: 1, 10 and 100.
    calibration = ["+a", "a", "a", "a", "a", "-a", "+b", "b", "b", "b", "-b"]
    assert log[: len(calibration)] == calibration
    assert log[len(calibration) :] == ["+a", "a", "-a", "+b", "b", "-b"] * 3
    # ns per operation: b's loop runs 10 operations of 100 ns each.
    assert samples == {"a": [100.0] * 3, "b": [100.0] * 3}
    assert loops["a"].calls[-1] == 10_000
    assert loops["b"].calls[-1] == 1_000
    assert not any(loops["a"].gc_enabled + loops["b"].gc_enabled)
    assert gc.isenabled()


# -- statistics and formatting -------------------------------------------------------------


def test_statistics() -> None:
    assert harness.best([3.0, 1.0, 2.0]) == 1.0
    assert harness.best([3.0, 1.0, 2.0], higher=True) == 3.0
    assert harness.median([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert harness.ratio(3.0, 2.0) == 1.5
    assert harness.ratio(None, 2.0) is None
    assert harness.ratio(3.0, 0.0) is None
    assert harness.paired_ratios([2.0, 0.0, 4.0], [3.0, 1.0, 2.0]) == [1.5, 0.5]
    with pytest.raises(ValueError):
        harness.paired_ratios([1.0], [1.0, 2.0])


def test_figures_and_ratios_are_formatted_or_shown_missing() -> None:
    assert harness.fmt(1234.56, ",.1f") == "1,234.6"
    assert harness.fmt(12.5, ".1f", suffix="%") == "12.5%"
    assert harness.fmt(None, ".1f") == "-"
    assert harness.fmt(math.nan, ".1f", missing="n/a") == "n/a"
    assert harness.fmt_ratio(1.234) == "1.23x"
    assert harness.fmt_ratio(1.2345, 3) == "1.234x"
    assert harness.fmt_ratio(None, missing="below") == "below"


def test_a_table_aligns_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    columns = harness.columns(("case", 8), ("ns", 7), ("x", 7))
    columns.append(harness.Column("note", 11, "<", gap=1))
    rows = [
        ["send", "1,234.5", "1.00x", "(baseline)"],
        ["a longer name", "2.0", "0.50x", ""],
        ["n/a row", "-"],
    ]
    harness.print_table(columns, rows, indent="  ")
    assert capsys.readouterr().out.splitlines() == [
        "  case         ns      x note",  # no trailing blanks
        "  send    1,234.5  1.00x (baseline)",
        "  a longer name    2.0  0.50x",  # a longer cell pushes the rest right, uncut
        "  n/a row       -",  # a shorter row
    ]
    summary = [harness.Column("scenario", 10, "<"), *harness.verdict_columns(9)]
    assert harness.format_row(summary, ["send-0", "<= 1.10x", "PASS"], "") == (
        "send-0      <= 1.10x PASS"
    )


def test_a_heading_follows_a_blank_line(capsys: pytest.CaptureFixture[str]) -> None:
    harness.heading("SUMMARY: the targets")
    harness.print_total(0.0, "; load 1.00 at the end")
    out = capsys.readouterr().out
    assert out.startswith("\n== SUMMARY: the targets\n\n(total ")
    assert out.endswith(" s; load 1.00 at the end)\n")


# -- targets -------------------------------------------------------------------------------


def test_the_verdicts_against_a_target() -> None:
    assert harness.verdict(1.05, 1.10) == "PASS"
    assert harness.verdict(1.10, 1.10) == "PASS"  # the limit itself meets it
    assert harness.verdict(1.11, 1.10) == "MISS"
    assert harness.verdict(None, 1.10) == "n/a"
    assert harness.verdict(25_000, 20_000, at_least=True) == "PASS"
    assert harness.verdict(19_999, 20_000, at_least=True) == "MISS"

    speed = harness.Target(2.0, at_least=True)
    assert (speed.text, speed.verdict(2.5), speed.verdict(1.5)) == (">= 2.00x", "PASS", "MISS")
    assert harness.Target(1.10).text == "<= 1.10x"
    assert harness.Target(3.0, unit="%").text == "<= 3%"
    rate = harness.Target(20_000, at_least=True, unit="/s")
    assert (rate.text, rate.verdict(None)) == (">= 20,000/s", "n/a")


# -- the command line and the JSON file ----------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str
    rounds: int
    workers: tuple[int, ...] = (1, 2)


def test_the_common_options() -> None:
    parser = harness.parser("Time something.\n\nMore text.")
    parser.add_argument("--rounds", type=harness.positive_int)
    parser.add_argument("--duration", type=harness.positive_float)
    assert parser.description == "Time something."
    args = parser.parse_args(["--quick", "--json", "out.json", "--rounds", "3"])
    assert (args.quick, args.json, args.rounds, args.duration) == (True, Path("out.json"), 3, None)
    assert parser.parse_args([]).json is None
    for wrong in (["--rounds", "0"], ["--duration", "-1"], ["--rounds", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
    quick = Config("quick", rounds=1)
    assert harness.configure(quick, rounds=5, workers=None) == Config("quick", 5)
    assert harness.configure(quick, workers=(4,)) == Config("quick", 1, (4,))


def test_config_options_are_positive_and_default_to_the_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @dataclass(frozen=True)
    class Run:
        name: str
        peer_events: int
        seconds: float

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    config = harness.config_options(
        parser, Run("quick", 2, 0.5), Run("default", 50_000, 5.0), peer_events="events", seconds="s"
    )
    assert config(parser.parse_args([])) == Run("default", 50_000, 5.0)
    assert config(parser.parse_args(["--quick", "--seconds", "2"])) == Run("quick", 2, 2.0)
    assert config(parser.parse_args(["--peer-events", "7"]), name="mine") == Run("mine", 7, 5.0)
    for wrong in (["--peer-events", "0"], ["--peer-events", "1.5"], ["--seconds", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
    parser.print_help()
    shown = " ".join(capsys.readouterr().out.split())
    assert "--peer-events PEER_EVENTS events (default: 50,000)" in shown
    assert "--seconds SECONDS s (default: 5)" in shown


def test_a_comma_list_takes_known_names_only(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    assert harness.comma_list(parser, "--only", " a, c,", ["a", "b", "c"]) == ["a", "c"]
    assert harness.comma_list(parser, "--only", "", ["a"]) == []
    with pytest.raises(SystemExit):
        harness.comma_list(parser, "--only", "a,z", ["a", "b"])
    assert "--only: unknown z; choose from a, b" in capsys.readouterr().err


def test_the_json_file_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out.json"
    facts = harness.run_facts()
    data = {"run": facts, "config": Config("quick", 2), "samples": (1.5, 2.5), "none": None}
    harness.write_json(path, "quick", data)
    assert capsys.readouterr().out == f"results written to {path}\n"
    read = harness.read_json(path)
    assert next(iter(read)) == "mode"
    assert read == {
        "mode": "quick",
        "run": facts,
        "config": {"name": "quick", "rounds": 2, "workers": [1, 2]},
        "samples": [1.5, 2.5],
        "none": None,
    }
    harness.write_json(None, "quick", data)  # no --json: nothing written, nothing said
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="'run'"):
        harness.write_json(path, "quick", {"samples": []})


def test_a_run_finishes_with_its_total_then_its_json_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.json"
    info = {"python": "3.x", "run": harness.run_facts()}
    started = time.perf_counter() - 2.0
    harness.finish(started, path, Config("quick", 2), info, "; more", rows=[1])
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["", out[1]]
    assert re.fullmatch(r"\(total 2\.\d s; more\)", out[1]), out
    assert out[2:] == [f"results written to {path}"]
    assert harness.read_json(path) == {
        "mode": "quick",
        **info,
        "config": {"name": "quick", "rounds": 2, "workers": [1, 2]},
        "rows": [1],
    }
    harness.finish(started, None, Config("quick", 2), info)  # no --json: only the total
    assert capsys.readouterr().out.startswith("\n(total ")


# -- child processes -----------------------------------------------------------------------


def test_a_child_is_read_timed_and_stopped() -> None:
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert harness.read_line(proc, 30.0) == "ready\n"
        if Path(f"/proc/{proc.pid}/stat").exists():
            used = harness.cpu_seconds(proc.pid)
            assert used is not None
            assert used >= 0
    finally:
        harness.stop_process(proc, timeout=10.0)
    assert proc.returncode is not None  # stopped, not left running
    assert proc.stdout is not None
    assert proc.stdout.closed
    assert harness.cpu_seconds(proc.pid) is None  # reaped: no such process any more


SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
import _harness as harness
sock = harness.listening_socket("127.0.0.1")
harness.announce(sock, kind="test")
while True:
    conn, _ = sock.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    conn.close()
"""


def test_a_child_server_announces_itself_answers_and_stops_when_orphaned() -> None:
    proc = harness.start_child(["-c", SERVER, str(ROOT / "benchmarks")])
    try:
        said = harness.read_announcement(proc, 30.0)
        assert said is not None
        assert (said["pid"], said["kind"]) == (proc.pid, "test")
        answer = harness.http_get("127.0.0.1", said["port"], "/", timeout=10.0)
        assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        assert proc.stdin is not None
        proc.stdin.close()  # the parent "gone": the child stops itself
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        harness.stop_process(proc)


def test_waiting_for_a_child_ends_when_done_when_it_exits_or_in_time() -> None:
    asked: list[int] = []

    def third_time() -> bool:
        asked.append(1)
        return len(asked) == 3

    proc = harness.start_child(["-c", "import sys; sys.stdin.read()"])
    try:
        assert harness.wait_for(third_time, proc, 30.0)
        assert len(asked) == 3
        assert not harness.wait_for(lambda: False, proc, 0.1)  # out of time
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits: no use waiting on
        assert not harness.wait_for(lambda: False, proc, 60.0)
        assert proc.poll() == 0
    finally:
        harness.stop_process(proc)


def test_a_child_that_says_nothing_is_no_announcement() -> None:
    proc = harness.start_child(["-c", "import time; time.sleep(60)"])
    try:
        assert harness.read_announcement(proc, 0.2) is None
    finally:
        harness.stop_process(proc)


def test_sigterm_unwinds_the_run() -> None:
    code = (
        f"import sys, time; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import _harness\n"
        "_harness.exit_on_sigterm()\n"
        "try:\n    print('ready', flush=True); time.sleep(60)\n"
        "finally:\n    print('cleaned up', flush=True)\n"
    )
    proc = harness.start_child(["-c", code])
    try:
        assert harness.read_line(proc, 30.0) == "ready\n"
        proc.terminate()
        assert proc.wait(30) == 128 + signal.SIGTERM  # SystemExit(143), not killed by it
        assert proc.stdout is not None
        assert proc.stdout.read() == "cleaned up\n"
    finally:
        harness.stop_process(proc)


def test_an_http_answer_is_read_by_its_length() -> None:
    async def answers(data: bytes, count: int) -> list[tuple[int, bytes, bytes]]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [await harness.read_answer(reader) for _ in range(count)]

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    gone = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert asyncio.run(answers(ok + gone, 2)) == [
        (200, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"hi"),
        (204, gone, b""),
    ]
    for wrong in (b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\nhi"):
        with pytest.raises(harness.ProtocolError):
            asyncio.run(answers(wrong, 1))
    with pytest.raises(asyncio.IncompleteReadError):  # the connection closed mid-body
        asyncio.run(answers(ok[:-1], 1))
    assert issubclass(harness.ProtocolError, harness.CONNECTION_ERRORS)


def test_a_listening_socket_and_installed_modules() -> None:
    with harness.listening_socket("127.0.0.1") as sock:
        host, port = sock.getsockname()
        assert (host, port > 0) == ("127.0.0.1", True)
    assert harness.importable("json")
    assert not harness.importable("no_such_module_here")
    assert harness.version("tocsin") is not None
    assert harness.version("no-such-distribution-here") is None
