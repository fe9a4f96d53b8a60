"""Smoke test of benchmarks/bench_todo.py: with every variant of the Todo app under
uvicorn, it runs to the end without a failed request, each server runs what its
variant says, the cProfile profile is printed, and no server or temporary file is
left behind, also when the run is interrupted.

No timing is asserted: ``--quick`` numbers are noise. Everything runs on 127.0.0.1
(the clients on 127.0.0.2 and up, where the system has them), on SQLite.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _bench import BENCHMARKS, ROOT, row, run_quick

for module in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "argon2"):
    pytest.importorskip(module)

BENCH = BENCHMARKS / "bench_todo.py"

VARIANTS = ("shipped", "no-tracer", "no-receivers", "bare")
# What each variant's server reports running.
STATES = {
    "shipped": (True, True, True),
    "no-tracer": (False, True, True),
    "no-receivers": (False, False, True),
    "bare": (False, False, False),
}
KINDS = ("create", "list", "get", "patch", "delete")
NUMBER = r"[\d,]+\.\d+"


def bench(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """The script in the background (the test interrupts it), its temporary directories
    under tmp_path, where the test can look for them."""
    return subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_quick_run_reports_every_variant(tmp_path: Path) -> None:
    args = ("--profile", "cprofile", "--top", "5")
    run = run_quick("bench_todo.py", tmp_path, *args, env={"TMPDIR": str(tmp_path)})
    row(r"^\s+round 1/1: shipped " + NUMBER + " req/s", run.stdout)

    summary = run.section("SUMMARY")
    for name in VARIANTS:
        # req/s, ratio, p50, ratio, p90, p99, ratio, max; then no error.
        row(rf"^\s+{name}(\s+{NUMBER}){{8}}\s+0\s", summary)
    by_request = run.section("latency by request")
    for kind in KINDS:
        row(rf"^\s+{kind}(\s+{NUMBER} / {NUMBER}){{4}}$", by_request)
    profile = run.section("profile of shipped by cProfile")
    assert profile.count("function, by") == 2, run.stdout
    assert "FAILED" not in run.stdout

    data = run.data
    assert data["config"]["clients"] == 4
    assert list(data["variants"]) == list(VARIANTS)
    for name, result in data["variants"].items():
        state = result["state"]
        assert (state["tracing"], state["request_receivers"], state["model_signals"]) == (
            STATES[name]
        )
        assert ("PanelRequestMiddleware" in state["middleware"]) is (name != "bare")
        assert result["errors"] == 0
        assert result["requests"] > 0
        assert len(result["rounds"]) == 1
        assert set(result["by_request_ms"]) == set(KINDS)
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
        assert gone(result["pid"])
    assert data["profile"]["tool"] == "cprofile"
    assert gone(data["profile"]["pid"])
    assert len(data["profile"]["own"]) == 5
    assert all(row["calls_per_request"] > 0 for row in data["profile"]["own"])
    assert not list(tmp_path.glob("bench_todo-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the servers in /proc")
def test_an_interrupted_run_stops_its_servers(tmp_path: Path) -> None:
    proc = bench(tmp_path, "--quick", "--variants", "shipped,bare", "--duration", "60")
    assert proc.stdout is not None
    with proc:  # its pipe is closed, and it is waited for, whatever happens
        try:
            deadline = time.monotonic() + 120
            servers: list[int] = []
            while len(servers) < 2:  # started, and loaded: interrupt it in its first window
                assert time.monotonic() < deadline, "the servers did not start"
                ready, _, _ = select.select([proc.stdout], [], [], 1.0)
                if ready and not proc.stdout.readline():
                    pytest.fail(f"the run ended ({proc.wait()})")
                servers = children(proc.pid)
            time.sleep(3)
            proc.send_signal(signal.SIGINT)  # Ctrl+C: the servers are in sessions of their own
            # Each server gets STOP_TIMEOUT (10 s) to stop, then is killed: on a busy
            # machine that can add up.
            output, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted: the servers were stopped" in output
    assert all(gone(pid) for pid in servers)
    assert not list(tmp_path.glob("bench_todo-*"))


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
