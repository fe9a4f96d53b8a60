"""Smoke test of benchmarks/bench.py: it runs to the end and reports every scenario.

No timing is asserted: ``--quick`` numbers are noise. tocsin must be benchmarked
(a run that leaves it out fails); the peers (django, blinker, psygnal) may be
missing, in which case their rows say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"

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
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Python ")

    head, sep, summary = proc.stdout.partition("== SUMMARY")
    assert sep, proc.stdout
    for scenario in SCENARIOS:
        # Each scenario has its own table, and a summary row with a verdict.
        assert f"== {scenario}: " in head
        row = re.search(rf"^\s+{re.escape(scenario)}\s+(.*)$", summary, re.MULTILINE)
        assert row is not None, f"no summary row for {scenario}:\n{summary}"
        # tocsin was measured, so every verdict is PASS or MISS, never n/a,
        # except that a missing blinker leaves two scenarios without their baseline.
        without_blinker = scenario in {"connect-disconnect", "import"}  # blinker is the baseline
        verdicts = ("PASS", "MISS", "n/a") if without_blinker else ("PASS", "MISS")
        assert row.group(1).split()[-1] in verdicts, row.group(0)

    data = json.loads(out.read_text())
    assert set(data["scenarios"]) == set(SCENARIOS)
    assert [row["scenario"] for row in data["summary"]] == list(SCENARIOS)
    for name, scenario in data["scenarios"].items():
        tocsin = scenario["results"]["tocsin"]
        assert isinstance(tocsin["value"], float), scenario
        # import is a difference of two start-up times: with --quick's few runs on a busy
        # machine it can come out below zero (noise, not a failure).
        assert tocsin["value"] >= 0 or name == "import", scenario
