"""Smoke test of benchmarks/bench.py: it runs to the end and reports every scenario.

No timing is asserted: ``--quick`` numbers are noise. tocsin must be benchmarked
(a run that leaves it out fails); the peers (django, blinker, psygnal) may be
missing, in which case their rows say so.
"""

from __future__ import annotations

import re
from pathlib import Path

from _bench import row, run_quick

SCENARIOS = (
    "send-0",
    "send-1",
    "send-10",
    "send-100",
    "send-10-priority",
    "send-filtered",
    "send-bound",
    "connect-disconnect",
    "asend-10",
    "bytes-per-receiver",
    "bytes-per-cycle",
    "asend-concurrency",
    "import",
)


def test_quick_run_reports_every_scenario(tmp_path: Path) -> None:
    run = run_quick("bench.py", tmp_path)
    for scenario in SCENARIOS:
        # Each scenario has its own table, and a summary row with a verdict.
        assert f"== {scenario}: " in run.head
        found = row(rf"^\s+{re.escape(scenario)}\s+(.*)$", run.summary)
        # tocsin was measured, so every verdict is PASS or MISS, never n/a,
        # except that a missing blinker leaves two scenarios without their baseline.
        without_blinker = scenario in {"connect-disconnect", "import"}  # blinker is the baseline
        verdicts = ("PASS", "MISS", "n/a") if without_blinker else ("PASS", "MISS")
        assert found.group(1).split()[-1] in verdicts, found.group(0)

    data = run.data
    assert set(data["scenarios"]) == set(SCENARIOS)
    assert [r["scenario"] for r in data["summary"]] == list(SCENARIOS)
    for name, scenario in data["scenarios"].items():
        tocsin = scenario["results"]["tocsin"]
        assert isinstance(tocsin["value"], float), scenario
        # import is a difference of two start-up times: with --quick's few runs on a busy
        # machine it can come out below zero (noise, not a failure).
        assert tocsin["value"] >= 0 or name == "import", scenario
