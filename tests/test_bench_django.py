"""Smoke test of benchmarks/bench_django.py: it runs to the end and reports every
scenario, both ways, with ratios and the target's verdicts.

No timing is asserted: ``--quick`` numbers are noise. The script itself checks,
untimed, that each variant's signals are on the dispatcher they should be and
reach their receivers, and fails otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from _bench import BENCHMARKS, row, run_quick

pytest.importorskip("django")

REQUESTS = (
    "request: save, 1 receiver",
    "request: save, 10 receivers",
    "request: request signals only",
)
SENDS = (
    "post_save.send, 1 receiver",
    "post_save.send, 10 receivers",
    "signals per save, 1 receiver",
    "signals per save, 10 receivers",
)
NUMBER = r"-?[\d,]+\.\d"
# "below": tocsin's cost under the baseline's; "noise": only Django's is (a quick run's
# rounds are too short to resolve it).
RATIO = r"(?:\d+\.\d\dx|below|noise)"


def test_quick_run_reports_every_scenario(tmp_path: Path) -> None:
    run = run_quick("bench_django.py", tmp_path)
    measured = run.section("measured")
    dispatch = run.section("dispatch cost")
    own = run.section("the dispatcher's own cost")
    summary = run.summary
    for name in REQUESTS:
        row(rf"^\s+{re.escape(name)}\s+req/s\s+{NUMBER}\s+{NUMBER}\s+{RATIO}$", measured)
    for name in SENDS:
        unit = "ns/save" if name.startswith("signals per save") else "ns/send"
        cells = rf"\s+{re.escape(unit)}\s+{NUMBER}\s+{NUMBER}\s+{RATIO}"
        baselines = rf"\s+{NUMBER}\s+{NUMBER}"
        row(rf"^\s+{re.escape(name)}{cells}{baselines}$", measured)
        row(rf"^\s+{re.escape(name)}{cells}$", dispatch)
        row(rf"^\s+{re.escape(name)}{cells}$", own)
    verdicts = re.findall(
        rf"^\s+(signals per save, \d+ receivers?)\s+{RATIO}\s+(PASS|MISS|n/a)"
        rf"  \(the dispatcher's own cost: {RATIO}\)$",
        summary,
        re.MULTILINE,
    )
    assert [name for name, _ in verdicts] == list(SENDS[2:]), summary

    data = run.data
    results = {result["scenario"]: result for result in data["results"]}
    assert list(results) == [*REQUESTS, *SENDS]
    for name, result in results.items():
        kinds = {"django", "tocsin", "floor", "minimal"} if name in SENDS else {"django", "tocsin"}
        assert set(result["figures"]) == kinds
        assert all(
            len(samples) == data["config"]["rounds"] for samples in result["samples_s"].values()
        )
        assert result["speedup"] == pytest.approx(
            min(result["samples_s"]["django"]) / min(result["samples_s"]["tocsin"])
        )
        if name in SENDS:
            for speedup, each in (
                (result["dispatch_speedup"], result["dispatch_ns"]),
                (result["dispatcher_speedup"], result["dispatcher_ns"]),
            ):
                if each["tocsin"] > 0 and each["django"] > 0:
                    assert speedup == pytest.approx(each["django"] / each["tocsin"])
                else:
                    assert speedup is None


LABELS = """
import bench_django as bench
for django, tocsin in [(3.0, 1.0), (-2.0, 1.0), (3.0, -1.0), (-2.0, -1.0), (0.0, 1.0)]:
    cost = {"django": django, "tocsin": tocsin}
    print(bench._ratio(bench._speedup(cost), cost))
"""


def test_a_cost_below_the_floor_is_named_never_a_negative_ratio() -> None:
    # A short run can measure a send as cheaper than its floor: a ratio of such costs
    # would print "-1.03x". tocsin's cost below the floor's is "below"; Django's alone,
    # "noise" (the run could not resolve it).
    proc = subprocess.run(
        [sys.executable, "-c", LABELS],
        capture_output=True,
        text=True,
        cwd=BENCHMARKS,
        timeout=120,
        check=True,
    )
    assert proc.stdout.split() == ["3.00x", "noise", "below", "below", "noise"]
