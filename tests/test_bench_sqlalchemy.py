"""Smoke test of benchmarks/bench_sqlalchemy.py: it runs to the end and reports every
database, variant and phase.

No timing is asserted: ``--quick`` numbers are noise. The script checks, untimed,
that each variant sends what it should (``plain`` nothing), and fails otherwise;
SQLite (in memory and in a temporary file) is all it needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_sqlalchemy.py"

DATABASES = ("memory", "file")
VARIANTS = {
    "plain": "plain SQLAlchemy (integration disabled)",
    "enabled": "integration enabled, no receivers",
    "receivers": "integration enabled, 1 receiver per signal",
}
PHASES = ("insert", "update", "total")
NUMBER = r"[\d,]+\.\d+"


def test_quick_run_reports_every_variant(tmp_path: Path) -> None:
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
    for database in DATABASES:
        # Each database has its own table: a row of three figures for every variant,
        # with a ratio to plain except on plain's own row.
        table = head.partition(f"== {database}: ")[2].partition("\n== ")[0]
        assert table, f"no {database} table:\n{head}"
        for kind, title in VARIANTS.items():
            ratio = "" if kind == "plain" else r"\s+\d+\.\d+x"
            cells = "".join(rf"\s+{NUMBER}{ratio}" for _ in PHASES)
            assert re.search(rf"^\s+{re.escape(title)}{cells}$", table, re.MULTILINE), (
                f"no row for {title!r} in the {database} table:\n{table}"
            )
        for kind in ("enabled", "receivers"):
            for phase in PHASES:
                row = re.search(
                    rf"^\s+{database}, {kind}\s+{phase}\s+(\d+\.\d+)x\s.*$", summary, re.MULTILINE
                )
                assert row is not None, (
                    f"no summary row for {database}, {kind}, {phase}:\n{summary}"
                )
                # Only the target's row (the total, with receivers) has a verdict.
                verdicts = ("PASS", "MISS") if (kind, phase) == ("receivers", "total") else ("-",)
                assert row.group(0).split()[-1] in verdicts, row.group(0)

    data = json.loads(out.read_text())
    assert data["mode"] == "quick"
    assert data["config"]["expire_on_commit"] is False
    assert set(data["databases"]) == set(DATABASES)
    for database in data["databases"].values():
        assert set(database["variants"]) == set(VARIANTS)
        for kind, variant in database["variants"].items():
            assert variant["title"] == VARIANTS[kind]
            for phase in PHASES:
                figures = variant[phase]
                assert isinstance(figures["best_ms"], float)
                assert figures["best_ms"] > 0
                assert len(figures["samples_ms"]) == data["config"]["rounds"]
    rows = [(row["database"], row["variant"], row["phase"]) for row in data["summary"]]
    assert rows == [(d, k, p) for d in DATABASES for k in ("enabled", "receivers") for p in PHASES]
