"""Smoke test of benchmarks/bench_sqlalchemy.py: it runs to the end and reports every
database, variant and phase.

No timing is asserted: ``--quick`` numbers are noise. The script checks, untimed,
that each variant sends what it should (``plain`` and ``events`` nothing) and that
SQLAlchemy calls the ``events`` variant's listeners as often as it should, and fails
otherwise. SQLite (in memory and in a temporary file) is all it needs; PostgreSQL
(TOCSIN_POSTGRES_URL, as in tests/contrib/sqlalchemy) is checked when the server can
be reached, and otherwise the script must say it left it out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from _bench import row, run_quick

pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine

POSTGRES_URL = os.environ.get(
    "TOCSIN_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

SQLITE = ("memory", "file")
VARIANTS = {
    "plain": "plain SQLAlchemy (integration disabled)",
    "enabled": "integration enabled, no receivers",
    "receivers": "integration enabled, 1 receiver per signal",
    "floor": "floor: 1 receiver per signal, called directly",
    "events": "plain SQLAlchemy, 1 listener per event",
}
PEER_TITLE = "receivers vs SQLAlchemy events"
# (variant, baseline) of the summary's rows, in order, for each database
COMPARISONS = (
    ("enabled", "plain"),
    ("receivers", "plain"),
    ("floor", "plain"),
    ("events", "plain"),
    ("receivers", "floor"),
    ("receivers", "events"),
)
PHASES = ("insert", "update", "total")
NUMBER = r"[\d,]+\.\d+"
RATIO = r"\d+\.\d+x"


def postgres_reachable() -> bool:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        if os.environ.get("TOCSIN_REQUIRE_SERVICES") == "1":
            raise
        return False
    return True


def test_quick_run_reports_every_variant(tmp_path: Path) -> None:
    with_postgres = postgres_reachable()
    databases = (*SQLITE, "postgresql") if with_postgres else SQLITE
    run = run_quick("bench_sqlalchemy.py", tmp_path)
    head, summary = run.head, run.summary
    if with_postgres:
        row(r"^\s+PostgreSQL \d+", head)
    else:
        assert "PostgreSQL skipped: not reachable" in head, head
        assert "== postgresql: " not in head
    for database in databases:
        # Each database has its own table: a row of three figures for every variant,
        # with a ratio to plain except on plain's own row; then the ratios of the
        # receivers variant to the events variant.
        table = run.section(f"{database}: ")
        assert table, f"no {database} table:\n{head}"
        for kind, title in VARIANTS.items():
            ratio = "" if kind == "plain" else rf"\s+{RATIO}"
            cells = "".join(rf"\s+{NUMBER}{ratio}" for _ in PHASES)
            row(rf"^\s+{re.escape(title)}{cells}$", table)
        ratios = "".join(rf"\s+{RATIO}" for _ in PHASES)
        row(rf"^\s+{re.escape(PEER_TITLE)}{ratios}$", table)
        for kind, baseline in COMPARISONS:
            label = kind if baseline == "plain" else f"{kind} vs {baseline}"
            for phase in PHASES:
                found = row(rf"^\s+{database}, {label}\s+{phase}\s+(\d+\.\d+)x\s.*$", summary)
                # Only the target's row (the total, with receivers, against plain)
                # has a verdict.
                is_target = (kind, baseline, phase) == ("receivers", "plain", "total")
                verdicts = ("PASS", "MISS") if is_target else ("-",)
                assert found.group(0).split()[-1] in verdicts, found.group(0)

    data = run.data
    assert data["config"]["expire_on_commit"] is False
    assert list(data["databases"]) == list(databases)
    assert ("postgresql" in data["skipped"]) is not with_postgres
    assert (data["postgresql"] is not None) is with_postgres
    for database in data["databases"].values():
        assert set(database["variants"]) == set(VARIANTS)
        for kind, variant in database["variants"].items():
            assert variant["title"] == VARIANTS[kind]
            for phase in PHASES:
                figures = variant[phase]
                assert isinstance(figures["best_ms"], float)
                assert figures["best_ms"] > 0
                assert len(figures["samples_ms"]) == data["config"]["rounds"]
        peer = database["receivers_vs_events"]
        assert set(peer) == set(PHASES)
        for phase in PHASES:
            receivers, events = (database["variants"][k][phase]["best_ms"] for k in COMPARISONS[-1])
            assert peer[phase] == pytest.approx(receivers / events)
    rows = [(r["database"], r["variant"], r["baseline"], r["phase"]) for r in data["summary"]]
    assert rows == [(d, k, b, p) for d in databases for k, b in COMPARISONS for p in PHASES]
