"""Smoke test of benchmarks/bench_remote.py: with tocsin and the redis-py floor, it
starts workers, runs every scenario to the end, and reports each one.

No timing is asserted: ``--quick`` numbers are noise. The script checks, untimed,
that every event reached a receiver exactly once and that nothing is left
unacknowledged, and fails otherwise. RQ and Celery (the ``bench`` group) are left
out, so the test needs only the test group and the Redis server at
TOCSIN_REDIS_URL (default 127.0.0.1:6379, database 0); without a server it is
skipped, unless TOCSIN_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _bench import row, run_quick
from _services import REDIS_URL, redis_or_skip

redis = pytest.importorskip("redis")

SCENARIOS = {
    ("tocsin", "one"): "tocsin, send(), an XADD each",
    ("tocsin", "batch"): "tocsin, send() in remote.batch(size=100)",
    ("redis-py", "one"): "redis-py, XADD per event",
    ("redis-py", "batch"): "redis-py, XADD pipelined by 100",
    ("tocsin", "threads"): "tocsin, send() from 8 threads",
    ("redis-py", "threads"): "redis-py, XADD per event from 8 threads",
    ("tocsin", "tasks"): "tocsin, await asend() from 8 tasks",
    ("redis-py", "tasks"): "redis-py, XADD per event from 8 tasks (redis.asyncio)",
}
WORKERS = (1, 2)
# The summary's verdict on each of tocsin's rows: the targets, or none.
VERDICTS = {
    "one": ("no target",),
    "batch": ("PASS", "MISS"),
    "threads": ("PASS", "MISS"),
    "tasks": ("PASS", "MISS"),
}
EVENTS = 300
NUMBER = r"[\d,]+(?:\.\d+)?"


@pytest.fixture
def redis_url() -> str:
    """The Redis server's URL; the test is skipped if nothing answers there."""
    return redis_or_skip(REDIS_URL)


def test_quick_run_reports_every_scenario(tmp_path: Path, redis_url: str) -> None:
    args = ("--only", "tocsin,redis-py", "--events", str(EVENTS), "--url", redis_url)
    run = run_quick("bench_remote.py", tmp_path, *args)
    row(rf"^load     {NUMBER} ", run.stdout)
    for workers in WORKERS:
        # A table per worker count, with a row of figures for every scenario: the
        # events, three rates, two latencies, the ratios to the redis-py floor, the
        # CPU per event of the sender and of the workers, and the load average.
        table = run.section(f"{workers} worker{'s' if workers > 1 else ''}: ")
        assert table, f"no table for {workers} worker(s):\n{run.head}"
        for scenario in SCENARIOS.values():
            cells = "".join(rf"\s+{NUMBER}" for _ in range(5))
            ratios = rf"\s+{NUMBER}x\s+{NUMBER}x"
            sending = rf"\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"  # CPU per event sent, run; load
            row(rf"^\s+{re.escape(scenario)}\s+{EVENTS}{cells}{ratios}{sending}$", table)
    for mode, verdicts in VERDICTS.items():
        scenario = SCENARIOS["tocsin", mode]
        found = row(rf"^\s+{re.escape(scenario)}\s+published .*$", run.summary)
        assert found.group(0).endswith(verdicts), found.group(0)

    data = run.data
    assert data["config"]["events"] == EVENTS
    got = {(s["system"], s["mode"], s["workers"]) for s in data["scenarios"]}
    assert got == {(system, mode, w) for system, mode in SCENARIOS for w in WORKERS}
    for scenario in data["scenarios"]:
        assert scenario["events"] == EVENTS
        assert len(scenario["rounds"]) == data["config"]["rounds"]
        for figure in ("publish", "end_to_end", "consume", "p50_ms", "p99_ms", "send_cpu_us"):
            assert scenario["median"][figure] > 0, (scenario["title"], figure)
        assert scenario["median"]["worker_cpu_us"] >= 0
        assert scenario["median"]["load"] >= 0
        if scenario["system"] == "redis-py":
            assert scenario["end_to_end_vs_floor"] == pytest.approx(1.0)
            assert scenario["publish_vs_floor"] == pytest.approx(1.0)

    # Every key the run made is gone.
    with redis.Redis.from_url(redis_url) as client:
        assert not list(client.scan_iter(match=f"*{data['run_id']}*"))
