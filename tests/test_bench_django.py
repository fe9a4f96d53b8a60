"""Smoke test of benchmarks/bench_django.py: it runs to the end and reports every
scenario, both ways, with ratios and the target's verdicts.

No timing is asserted: ``--quick`` numbers are noise. The script itself checks,
untimed, that each variant's signals are on the dispatcher they should be and
reach their receivers, and fails otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_django.py"
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
RATIO = r"(?:\d+\.\d\dx|below)"  # "below": tocsin's cost under the baseline's


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
    measured, _, rest = proc.stdout.partition("== dispatch cost")
    dispatch, _, rest = rest.partition("== the dispatcher's own cost")
    own, _, summary = rest.partition("== SUMMARY")
    assert summary, proc.stdout
    for name in REQUESTS:
        row = rf"^\s+{re.escape(name)}\s+req/s\s+{NUMBER}\s+{NUMBER}\s+{RATIO}$"
        assert re.search(row, measured, re.MULTILINE), f"no row {name!r}:\n{measured}"
    for name in SENDS:
        unit = "ns/save" if name.startswith("signals per save") else "ns/send"
        cells = rf"\s+{re.escape(unit)}\s+{NUMBER}\s+{NUMBER}\s+{RATIO}"
        baselines = rf"\s+{NUMBER}\s+{NUMBER}"
        assert re.search(rf"^\s+{re.escape(name)}{cells}{baselines}$", measured, re.MULTILINE)
        assert re.search(rf"^\s+{re.escape(name)}{cells}$", dispatch, re.MULTILINE), dispatch
        assert re.search(rf"^\s+{re.escape(name)}{cells}$", own, re.MULTILINE), own
    verdicts = re.findall(
        rf"^\s+(signals per save, \d+ receivers?)\s+{RATIO}\s+(PASS|MISS)"
        rf"  \(the dispatcher's own cost: {RATIO}\)$",
        summary,
        re.MULTILINE,
    )
    assert [name for name, _ in verdicts] == list(SENDS[2:]), summary

    data = json.loads(out.read_text())
    assert data["mode"] == "quick"
    rows = {row["scenario"]: row for row in data["results"]}
    assert list(rows) == [*REQUESTS, *SENDS]
    for name, row in rows.items():
        kinds = {"django", "tocsin", "floor", "minimal"} if name in SENDS else {"django", "tocsin"}
        assert set(row["figures"]) == kinds
        assert all(
            len(samples) == data["config"]["rounds"] for samples in row["samples_s"].values()
        )
        assert row["speedup"] == pytest.approx(
            min(row["samples_s"]["django"]) / min(row["samples_s"]["tocsin"])
        )
        if name in SENDS:
            cost = row["dispatch_ns"]
            own = row["dispatcher_ns"]
            for speedup, each in (
                (row["dispatch_speedup"], cost),
                (row["dispatcher_speedup"], own),
            ):
                if each["tocsin"] > 0:
                    assert speedup == pytest.approx(each["django"] / each["tocsin"])
                else:
                    assert speedup is None
