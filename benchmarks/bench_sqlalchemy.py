#!/usr/bin/env python3
"""Measure what tocsin's SQLAlchemy model signals cost an ORM that inserts and updates rows.

    python benchmarks/bench_sqlalchemy.py                 # the full run (about 25 s)
    python benchmarks/bench_sqlalchemy.py --quick         # a few seconds: smoke test only
    python benchmarks/bench_sqlalchemy.py --db memory     # only SQLite in memory (or: file)
    python benchmarks/bench_sqlalchemy.py --rows 2000 --rounds 11
    python benchmarks/bench_sqlalchemy.py --json out.json # also write every sample

One declarative model (``Todo``: id, text, done, counter) on SQLite, through
the ORM. A sample is one scenario on a fresh database: create 10,000
instances, ``add_all()``, ``commit()`` (the insert phase); then set ``done``
on all of them and ``commit()`` again (the update phase). Each phase is timed
on its own, with the garbage collector disabled; building the database and
the session is not timed. The session has ``expire_on_commit=False``, so that
the update phase is the UPDATE, not also a SELECT per row to refresh the
instances the first commit expired (``--expire-on-commit`` restores the
default, and that refresh).

Three variants of the same model, in the same process:

* ``plain``: plain SQLAlchemy, the integration disabled (what importing
  ``tocsin.contrib.sqlalchemy`` installs for on-commit receivers stays: two
  session listeners, called once per transaction);
* ``enabled``: ``enable_model_signals(Base)``, no receivers;
* ``receivers``: enabled, with one no-op receiver on each model signal
  (``pre_init``, ``post_init``, ``pre_save``, ``post_save``, ``pre_delete``,
  ``post_delete`` for ``Todo``; ``m2m_changed`` for any sender), although
  the scenario sends only the first four.

The variants take turns, once per round, the order reversed every other
round, so that drift hits them all alike. Two databases, unless ``--db``
says one: SQLite in memory (``sqlite://``: only CPU, the integration's cost
at its most visible) and a SQLite file in a temporary directory (the
defaults an application gets: rollback journal, ``synchronous=FULL``, so
each commit waits for the disk). The figures are the fastest round, in ms
per 10,000 rows, and ratios to ``plain``; the JSON file also has the
medians and every sample.

The project's target: with one receiver per signal, inserting and updating
10,000 rows is at most 10 % slower than without the integration. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tocsin import Signal, signals
from tocsin.contrib.sqlalchemy import (
    disable_model_signals,
    enable_model_signals,
    model_signals_enabled,
)

# The timing helper of the dispatcher benchmark, beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import timed

perf_counter_ns = time.perf_counter_ns

Runner = Callable[[int], int]  # runs one phase over *rows* rows, returns the elapsed ns

TARGET_RATIO = 1.10  # the issue: at most 10 % slower, with one receiver per signal
PER_ROWS = 10_000  # the figures are ms per this many rows
VARIANTS = ("plain", "enabled", "receivers")
VARIANT_TITLES = {
    "plain": "plain SQLAlchemy (integration disabled)",
    "enabled": "integration enabled, no receivers",
    "receivers": "integration enabled, 1 receiver per signal",
}
PHASES = ("insert", "update", "total")
DATABASES = ("memory", "file")
DATABASE_TITLES = {
    "memory": "SQLite in memory (sqlite://)",
    "file": "SQLite file in a temporary directory (default journal, synchronous=FULL)",
}
MODEL_SIGNALS: dict[str, Signal] = {
    "pre_init": signals.pre_init,
    "post_init": signals.post_init,
    "pre_save": signals.pre_save,
    "post_save": signals.post_save,
    "pre_delete": signals.pre_delete,
    "post_delete": signals.post_delete,
    "m2m_changed": signals.m2m_changed,
}


@dataclass(frozen=True)
class Config:
    name: str
    rows: int
    rounds: int  # samples per variant
    expire_on_commit: bool = False


DEFAULT = Config("default", rows=10_000, rounds=7)
QUICK = Config("quick", rows=300, rounds=2)


# -- the model -----------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Todo(Base):
    __tablename__ = "todo"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool]
    counter: Mapped[int]


class Database:
    """Fresh SQLite databases with the ``todo`` table, in memory or in files."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.title = DATABASE_TITLES[kind]
        self.directory = directory
        self.made = 0

    def fresh(self) -> tuple[Engine, Callable[[], None]]:
        """A new, empty database's engine, and how to throw it away."""
        self.made += 1
        path = self.directory / f"bench-{self.made}.db"
        engine = create_engine("sqlite://" if self.kind == "memory" else f"sqlite:///{path}")
        Base.metadata.create_all(engine)

        def drop() -> None:
            engine.dispose()
            for leftover in (path, path.with_name(path.name + "-journal")):
                leftover.unlink(missing_ok=True)

        return engine, drop


# -- the receivers and the variants --------------------------------------------------------


class Receivers:
    """One receiver on each model signal: for ``Todo``, except ``m2m_changed`` (its
    sender would be a secondary table; ``Todo`` has none), for any sender.

    No-op receivers for the timed runs; counting ones for the check.
    """

    def __init__(self, counting: bool = False) -> None:
        self.calls = dict.fromkeys(MODEL_SIGNALS, 0)
        self.created = 0  # post_save with created=True
        self.updated_done = 0  # pre_save and post_save with update_fields={"done"}
        self.functions = {name: self._make(name, counting) for name in MODEL_SIGNALS}

    def _make(self, name: str, counting: bool) -> Callable[..., None]:
        def receiver(sender: object = None, **kw: Any) -> None:
            return None

        def counter(sender: object = None, **kw: Any) -> None:
            self.calls[name] += 1
            if kw.get("created"):
                self.created += 1
            if kw.get("update_fields") == {"done"}:
                self.updated_done += 1

        return counter if counting else receiver

    @staticmethod
    def sender(name: str) -> type | None:
        return None if name == "m2m_changed" else Todo

    def connect(self) -> None:
        for name, function in self.functions.items():
            MODEL_SIGNALS[name].connect(function, sender=self.sender(name))

    def disconnect(self) -> None:
        for name, function in self.functions.items():
            MODEL_SIGNALS[name].disconnect(function, sender=self.sender(name))


def check_no_listeners() -> None:
    if model_signals_enabled(Base):
        raise RuntimeError("model signals are already enabled for the benchmark's Base")
    for name, sig in MODEL_SIGNALS.items():
        if sig.has_listeners(Todo) or sig.has_listeners():
            raise RuntimeError(f"{name} already has receivers: the variants would not be alike")


@contextmanager
def variant(kind: str, receivers: Receivers | None = None) -> Iterator[None]:
    """The integration as *kind* wants it, with *receivers* connected, for the block."""
    if kind != "plain":
        enable_model_signals(Base)
    if receivers is not None:
        receivers.connect()
    try:
        yield
    finally:
        if receivers is not None:
            receivers.disconnect()
        disable_model_signals(Base)


# -- one sample ----------------------------------------------------------------------------


def insert_runner(session: Session, texts: list[str], todos: list[Todo]) -> Runner:
    """Create *rows* instances, ``add_all()``, ``commit()``; they are left in *todos*."""

    def run(rows: int) -> int:
        s, t = session, texts[:rows]
        t0 = perf_counter_ns()
        created = [Todo(text=text, done=False, counter=0) for text in t]
        s.add_all(created)
        s.commit()
        elapsed = perf_counter_ns() - t0
        todos.extend(created)
        return elapsed

    return run


def update_runner(session: Session, todos: list[Todo]) -> Runner:
    """Set ``done`` on the first *rows* of *todos*, ``commit()``."""

    def run(rows: int) -> int:
        s, objs = session, todos[:rows]
        t0 = perf_counter_ns()
        for todo in objs:
            todo.done = True
        s.commit()
        return perf_counter_ns() - t0

    return run


def sample(db: Database, cfg: Config, texts: list[str]) -> tuple[int, int]:
    """Both phases on a fresh database: (insert ns, update ns)."""
    engine, drop = db.fresh()
    try:
        with Session(engine, expire_on_commit=cfg.expire_on_commit) as session:
            todos: list[Todo] = []
            gc.collect()
            insert_ns = timed(insert_runner(session, texts, todos), cfg.rows)
            update_ns = timed(update_runner(session, todos), cfg.rows)
            written = session.scalar(select(func.count()).where(Todo.done))
        if written != cfg.rows:
            raise RuntimeError(f"{db.kind}: {written} rows updated, expected {cfg.rows}")
        del todos
        return insert_ns, update_ns
    finally:
        drop()


def check(db: Database, cfg: Config, texts: list[str], kind: str) -> None:
    """One untimed run (also a warm-up), with counting receivers: the variant sends
    what it should (``plain`` nothing)."""
    counting = Receivers(counting=True)
    with variant(kind, counting):
        sample(db, cfg, texts)
    n = cfg.rows
    sends = n if kind != "plain" else 0
    expected = {"pre_init": sends, "post_init": sends, "pre_save": 2 * sends}
    expected |= {"post_save": 2 * sends, "pre_delete": 0, "post_delete": 0, "m2m_changed": 0}
    if (
        counting.calls != expected
        or counting.created != sends
        or counting.updated_done != 2 * sends
    ):
        raise RuntimeError(
            f"{db.kind}, {kind}: the receivers saw {counting.calls} "
            f"({counting.created} created, {counting.updated_done} with update_fields={{'done'}}); "
            f"expected {expected}"
        )


# -- rounds --------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    title: str
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {phase: [] for phase in PHASES}
    )  # ms per PER_ROWS rows, one per round

    def best(self, phase: str) -> float:
        return min(self.samples[phase])

    def median(self, phase: str) -> float:
        return statistics.median(self.samples[phase])


def run_database(db: Database, cfg: Config) -> dict[str, Result]:
    """Check every variant once, then sample them round-robin."""
    texts = [f"todo number {i}" for i in range(cfg.rows)]
    for kind in VARIANTS:
        check(db, cfg, texts, kind)
    noop = Receivers()
    results = {kind: Result(kind, VARIANT_TITLES[kind]) for kind in VARIANTS}
    scale = PER_ROWS / cfg.rows / 1e6  # ns for cfg.rows -> ms per PER_ROWS
    for i in range(cfg.rounds):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        for kind in order:
            with variant(kind, noop if kind == "receivers" else None):
                insert_ns, update_ns = sample(db, cfg, texts)
            samples = results[kind].samples
            samples["insert"].append(insert_ns * scale)
            samples["update"].append(update_ns * scale)
            samples["total"].append((insert_ns + update_ns) * scale)
    return results


def paired_ratios(base: Result, other: Result, phase: str) -> list[float]:
    """Per round: *other*'s time over the plain variant's of the same round."""
    return [o / b for b, o in zip(base.samples[phase], other.samples[phase], strict=True) if b]


# -- reporting -----------------------------------------------------------------------------


def print_database(db: Database, cfg: Config, results: dict[str, Result]) -> None:
    base = results["plain"]
    print()
    print(f"== {db.kind}: {db.title}")
    print(f"   ms per {PER_ROWS:,} rows, fastest of {cfg.rounds} round(s), and the ratio to plain")
    print((f"   {'case':<44}" + "".join(f"{phase:>10}{'':6}" for phase in PHASES)).rstrip())
    for kind, result in results.items():
        cells = []
        for phase in PHASES:
            ratio = "" if kind == "plain" else f"{result.best(phase) / base.best(phase):.2f}x"
            cells.append(f"{result.best(phase):>10,.1f}{ratio:>6}")
        print((f"   {result.title:<44}" + "".join(cells)).rstrip())
    sys.stdout.flush()


def summarize(all_results: dict[str, dict[str, Result]]) -> list[dict[str, Any]]:
    """One row per database, variant and phase; the target applies to the total with
    receivers."""
    rows = []
    for kind_db, results in all_results.items():
        base = results["plain"]
        for kind in VARIANTS[1:]:
            for phase in PHASES:
                ratio = results[kind].best(phase) / base.best(phase)
                paired = statistics.median(paired_ratios(base, results[kind], phase))
                is_target = kind == "receivers" and phase == "total"
                row: dict[str, Any] = {
                    "database": kind_db,
                    "variant": kind,
                    "phase": phase,
                    "ratio": ratio,
                    "paired_median_ratio": paired,
                    "added_ms": results[kind].best(phase) - base.best(phase),
                    "target": f"<= {TARGET_RATIO:.2f}x" if is_target else "(info)",
                }
                if is_target:
                    row["result"] = "PASS" if ratio <= TARGET_RATIO else "MISS"
                else:
                    row["result"] = "-"
                rows.append(row)
    return rows


def print_summary(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        f"== SUMMARY: against plain SQLAlchemy; target: inserting and updating {PER_ROWS:,} rows\n"
        f"   with 1 receiver per signal is at most {100 * (TARGET_RATIO - 1):.0f}% slower "
        f"(<= {TARGET_RATIO:.2f}x)"
    )
    print(
        f"   {'database, variant':<22}{'phase':<8}{'ratio':>8}{'paired':>9}{'added ms':>10}"
        f"  target    result"
    )
    for row in rows:
        print(
            f"   {row['database'] + ', ' + row['variant']:<22}{row['phase']:<8}"
            f"{row['ratio']:>7.3f}x{row['paired_median_ratio']:>8.3f}x{row['added_ms']:>+10.1f}"
            f"  {row['target']:<10}{row['result']}"
        )
    print(
        f"   (ratio: fastest round against fastest round, the verdict's figure; paired: the\n"
        f"   median over rounds of the ratio to plain's run of the same round; added ms: per\n"
        f"   {PER_ROWS:,} rows.)"
    )


def header(cfg: Config) -> dict[str, str]:
    info = {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "tocsin": metadata.version("tocsin"),
        "sqlalchemy": metadata.version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
    }
    print(f"Python   {info['python']} ({info['implementation']})")
    print(
        f"platform {info['platform']}; tocsin {info['tocsin']}, SQLAlchemy {info['sqlalchemy']}, "
        f"SQLite {info['sqlite']}"
    )
    print(
        f"mode     {cfg.name}: {cfg.rows:,} rows inserted then updated per sample, "
        f"{cfg.rounds} round(s) of the variants taking turns, fastest reported, "
        f"gc disabled while timing"
    )
    expire = "True (the default: the update phase also refreshes each row)"
    print(f"session  expire_on_commit={expire if cfg.expire_on_commit else False}")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results here")
    parser.add_argument(
        "--db", choices=(*DATABASES, "both"), default="both", help="which SQLite database"
    )
    parser.add_argument("--rows", type=int, help=f"rows per sample (default {DEFAULT.rows:,})")
    parser.add_argument(
        "--rounds", type=int, help=f"samples per variant (default {DEFAULT.rounds})"
    )
    parser.add_argument(
        "--expire-on-commit",
        action="store_true",
        help="the session's default: the update phase then also reloads every row",
    )
    args = parser.parse_args(argv)
    for name in ("rows", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    cfg = QUICK if args.quick else DEFAULT
    cfg = replace(
        cfg,
        rows=args.rows or cfg.rows,
        rounds=args.rounds or cfg.rounds,
        expire_on_commit=args.expire_on_commit,
    )
    kinds = DATABASES if args.db == "both" else (args.db,)

    started = time.perf_counter()
    info: dict[str, Any] = header(cfg)
    check_no_listeners()
    all_results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sqlalchemy-") as directory:
        for kind in kinds:
            db = Database(kind, Path(directory))
            all_results[kind] = run_database(db, cfg)
            print_database(db, cfg, all_results[kind])
    rows = summarize(all_results)
    print_summary(rows)
    print(f"\n(total {time.perf_counter() - started:.1f} s)")

    if args.json:
        data = {
            **info,
            "mode": cfg.name,
            "config": asdict(cfg),
            "per_rows": PER_ROWS,
            "target_ratio": TARGET_RATIO,
            "databases": {
                kind: {
                    "title": DATABASE_TITLES[kind],
                    "variants": {
                        variant_kind: {
                            "title": r.title,
                            **{
                                phase: {
                                    "best_ms": r.best(phase),
                                    "median_ms": r.median(phase),
                                    "samples_ms": r.samples[phase],
                                }
                                for phase in PHASES
                            },
                        }
                        for variant_kind, r in results.items()
                    },
                }
                for kind, results in all_results.items()
            },
            "summary": rows,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
