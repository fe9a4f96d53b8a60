#!/usr/bin/env python3
"""Measure what tocsin's SQLAlchemy model signals cost an ORM that inserts and updates rows.

    python benchmarks/bench_sqlalchemy.py                 # the full run (about a minute)
    python benchmarks/bench_sqlalchemy.py --quick         # a few seconds: smoke test only
    python benchmarks/bench_sqlalchemy.py --db memory     # one database (or: file, postgresql,
                                                          # sqlite for both SQLite ones)
    python benchmarks/bench_sqlalchemy.py --rows 2000 --rounds 11
    python benchmarks/bench_sqlalchemy.py --json out.json # also write every sample

The variants, the databases (PostgreSQL at TOCSIN_POSTGRES_URL) and the target:
benchmarks/README.md ("SQLAlchemy model signals").
"""

from __future__ import annotations

import gc
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, String, create_engine, event, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, QueryContext, Session, mapped_column

import _harness as harness
from tocsin import Signal, signals
from tocsin.contrib.sqlalchemy import (
    disable_model_signals,
    enable_model_signals,
    model_signals_enabled,
)

perf_counter_ns = time.perf_counter_ns

Runner = Callable[[int], int]  # runs one phase over *rows* rows, returns the elapsed ns

TARGET = harness.Target(1.10)  # the issue: at most 10 % slower, with one receiver per signal
PER_ROWS = 10_000  # the figures are ms per this many rows
VARIANTS = ("plain", "enabled", "receivers", "floor", "events")
VARIANT_TITLES = {
    "plain": "plain SQLAlchemy (integration disabled)",
    "enabled": "integration enabled, no receivers",
    "receivers": "integration enabled, 1 receiver per signal",
    "floor": "floor: 1 receiver per signal, called directly",
    "events": "plain SQLAlchemy, 1 listener per event",
}
ENABLED_VARIANTS = ("enabled", "receivers")  # the others: the integration disabled
PEER_TITLE = "receivers vs SQLAlchemy events"  # receivers' time over events'
PHASES = ("insert", "update", "total")
DATABASES = ("memory", "file", "postgresql")
DATABASE_TITLES = {
    "memory": "SQLite in memory (sqlite://)",
    "file": "SQLite file in a temporary directory (default journal, synchronous=FULL)",
    "postgresql": "PostgreSQL server, a fresh schema per sample",
}
SQLITE = sqlite3.sqlite_version
POSTGRES_URL = os.environ.get(
    "TOCSIN_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
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


def postgres_version() -> str:
    """The server's version; raises when it cannot be reached."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


class Database:
    """Fresh databases with the ``todo`` table: SQLite in memory or in files, or
    PostgreSQL schemas."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.title = DATABASE_TITLES[kind]
        self.directory = directory
        self.made = 0
        # PostgreSQL: creates and drops the schemas, outside any transaction.
        self.admin = (
            create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            if kind == "postgresql"
            else None
        )

    def fresh(self) -> tuple[Engine, Callable[[], None]]:
        """A new, empty database's engine, and how to throw it away."""
        self.made += 1
        if self.admin is not None:
            return self._fresh_schema(self.admin)
        path = self.directory / f"bench-{self.made}.db"
        engine = create_engine("sqlite://" if self.kind == "memory" else f"sqlite:///{path}")
        Base.metadata.create_all(engine)

        def drop() -> None:
            engine.dispose()
            for leftover in (path, path.with_name(path.name + "-journal")):
                leftover.unlink(missing_ok=True)

        return engine, drop

    def _fresh_schema(self, admin: Engine) -> tuple[Engine, Callable[[], None]]:
        schema = f"tocsin_bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = create_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})

        def drop() -> None:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

        try:
            Base.metadata.create_all(engine)
        except BaseException:
            drop()
            raise
        return engine, drop

    def close(self) -> None:
        if self.admin is not None:
            self.admin.dispose()


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


# SQLAlchemy's own events behind the model signals: ``init`` (pre_init, post_init:
# tocsin wraps the class's __init__ instead), ``load`` (post_init of a loaded row),
# and the mapper's save and delete events (pre_save … post_delete).
MAPPER_EVENTS = (
    "before_insert",
    "after_insert",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
)
NATIVE_EVENTS = ("init", "load", *MAPPER_EVENTS)


class Listeners:
    """One listener on each of SQLAlchemy's events in NATIVE_EVENTS, for ``Todo``,
    with the arguments each event documents and SQLAlchemy's default options (not
    raw: it passes the instance, not its state).

    No-op listeners for the timed runs; counting ones for the check.
    """

    def __init__(self, counting: bool = False) -> None:
        self.calls = dict.fromkeys(NATIVE_EVENTS, 0)
        self.wrong = 0  # calls whose target was not a Todo instance
        self.functions: dict[str, Callable[..., None]] = {
            "init": self._init(counting),
            "load": self._load(counting),
            **{name: self._mapper_event(name, counting) for name in MAPPER_EVENTS},
        }

    def _count(self, name: str, target: object) -> None:
        self.calls[name] += 1
        if type(target) is not Todo:
            self.wrong += 1

    def _init(self, counting: bool) -> Callable[..., None]:
        def on_init(target: Todo, args: Any, kwargs: Any) -> None:
            return None

        def counter(target: Todo, args: Any, kwargs: Any) -> None:
            self._count("init", target)

        return counter if counting else on_init

    def _load(self, counting: bool) -> Callable[..., None]:
        def on_load(target: Todo, context: QueryContext) -> None:
            return None

        def counter(target: Todo, context: QueryContext) -> None:
            self._count("load", target)

        return counter if counting else on_load

    def _mapper_event(self, name: str, counting: bool) -> Callable[..., None]:
        def listener(mapper: Mapper[Any], connection: Connection, target: Todo) -> None:
            return None

        def counter(mapper: Mapper[Any], connection: Connection, target: Todo) -> None:
            self._count(name, target)

        return counter if counting else listener

    def listen(self) -> None:
        for name, function in self.functions.items():
            event.listen(Todo, name, function)

    def remove(self) -> None:
        for name, function in self.functions.items():
            event.remove(Todo, name, function)


class Floor:
    """The least an integration sending Django's model signals can do: SQLAlchemy's
    events (raw, as tocsin listens) call one receiver per signal themselves, with the
    keyword arguments Django sends a plain ``save()`` (``update_fields=None``), and no
    dispatcher. ``post_init`` is called from the ``init`` event too (tocsin wraps
    ``__init__`` instead, to send it after): the cost is the same, the order is not the
    point here. What the integration costs beyond this is tocsin's.
    """

    def __init__(self, receivers: Receivers) -> None:
        call = receivers.functions
        pre_init, post_init = call["pre_init"], call["post_init"]
        pre_save, post_save = call["pre_save"], call["post_save"]
        pre_init_signal, post_init_signal = signals.pre_init, signals.post_init
        pre_save_signal, post_save_signal = signals.pre_save, signals.post_save
        using = "default"

        def init(state: Any, args: Any, kwargs: Any) -> None:
            instance = state.obj()
            pre_init(signal=pre_init_signal, sender=Todo, args=args, kwargs=kwargs)
            post_init(signal=post_init_signal, sender=Todo, instance=instance)

        def before_save(mapper: Mapper[Any], connection: Connection, state: Any) -> None:
            pre_save(
                signal=pre_save_signal,
                sender=Todo,
                instance=state.obj(),
                raw=False,
                using=using,
                update_fields=None,
            )

        def after_save(created: bool) -> Callable[..., None]:
            def listener(mapper: Mapper[Any], connection: Connection, state: Any) -> None:
                post_save(
                    signal=post_save_signal,
                    sender=Todo,
                    instance=state.obj(),
                    created=created,
                    raw=False,
                    using=using,
                    update_fields=None,
                )

            return listener

        self.functions: dict[str, Callable[..., None]] = {
            "init": init,
            "before_insert": before_save,
            "after_insert": after_save(True),
            "before_update": before_save,
            "after_update": after_save(False),
        }

    def listen(self) -> None:
        for name, function in self.functions.items():
            event.listen(Todo, name, function, raw=True, retval=True)

    def remove(self) -> None:
        for name, function in self.functions.items():
            event.remove(Todo, name, function)


def native_listeners() -> dict[str, list[Any]]:
    """What listens to ``Todo``'s events in NATIVE_EVENTS."""
    mapper = Todo.__mapper__
    manager = mapper.class_manager
    return {
        name: list(getattr(manager.dispatch if name in ("init", "load") else mapper.dispatch, name))
        for name in NATIVE_EVENTS
    }


# SQLAlchemy's own listeners (the mapper listens to ``init``), before anything else.
SQLALCHEMY_LISTENERS = native_listeners()


def check_no_listeners() -> None:
    """Nothing listens to the benchmark's model (beyond what SQLAlchemy itself
    registers), so that the variants are alike."""
    if model_signals_enabled(Base):
        raise RuntimeError("model signals are already enabled for the benchmark's Base")
    for name, sig in MODEL_SIGNALS.items():
        if sig.has_listeners(Todo) or sig.has_listeners():
            raise RuntimeError(f"{name} already has receivers: the variants would not be alike")
    if native_listeners() != SQLALCHEMY_LISTENERS:
        raise RuntimeError(
            f"Todo has listeners other than SQLAlchemy's own: {native_listeners()}; "
            f"expected {SQLALCHEMY_LISTENERS}"
        )


@contextmanager
def variant(
    kind: str, receivers: Receivers | None = None, listeners: Listeners | Floor | None = None
) -> Iterator[None]:
    """The integration as *kind* wants it, with *receivers* connected and SQLAlchemy
    *listeners* listening, for the block."""
    if kind in ENABLED_VARIANTS:
        enable_model_signals(Base)
    if receivers is not None:
        receivers.connect()
    if listeners is not None:
        listeners.listen()
    try:
        yield
    finally:
        if listeners is not None:
            listeners.remove()
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
            insert_ns = harness.timed(insert_runner(session, texts, todos), cfg.rows)
            update_ns = harness.timed(update_runner(session, todos), cfg.rows)
            written = session.scalar(select(func.count()).where(Todo.done))
        if written != cfg.rows:
            raise RuntimeError(f"{db.kind}: {written} rows updated, expected {cfg.rows}")
        del todos
        return insert_ns, update_ns
    finally:
        drop()


def check(db: Database, cfg: Config, texts: list[str], kind: str) -> None:
    """One untimed run (also a warm-up), with counting receivers: the variant sends
    what it should (``plain`` and ``events`` nothing; ``floor`` calls the receivers
    itself), and for ``events``, with counting listeners, SQLAlchemy calls each as
    often as it should."""
    counting = Receivers(counting=True)
    listeners = variant_listeners(kind, counting, counting=True)
    with variant(kind, None if kind == "floor" else counting, listeners):
        sample(db, cfg, texts)
    n = cfg.rows
    if isinstance(listeners, Listeners):
        # Each instance is created once, inserted once and updated once; none is
        # loaded from a row or deleted.
        never = ("load", "before_delete", "after_delete")
        calls = {name: 0 if name in never else n for name in NATIVE_EVENTS}
        if listeners.calls != calls or listeners.wrong:
            raise RuntimeError(
                f"{db.kind}, {kind}: SQLAlchemy called the listeners {listeners.calls} "
                f"({listeners.wrong} times not with a Todo); expected {calls}"
            )
    sends = n if kind in (*ENABLED_VARIANTS, "floor") else 0
    expected = {"pre_init": sends, "post_init": sends, "pre_save": 2 * sends}
    expected |= {"post_save": 2 * sends, "pre_delete": 0, "post_delete": 0, "m2m_changed": 0}
    # The floor sends update_fields=None, as Django's plain save(); tocsin names the
    # columns an UPDATE writes.
    updated_done = 0 if kind == "floor" else 2 * sends
    if (
        counting.calls != expected
        or counting.created != sends
        or counting.updated_done != updated_done
    ):
        raise RuntimeError(
            f"{db.kind}, {kind}: the receivers saw {counting.calls} "
            f"({counting.created} created, {counting.updated_done} with update_fields={{'done'}}); "
            f"expected {expected}"
        )


def variant_listeners(
    kind: str, receivers: Receivers, counting: bool = False
) -> Listeners | Floor | None:
    """What listens to SQLAlchemy's events in *kind*: the ``events`` variant's
    listeners, the ``floor``'s (calling *receivers*), or nothing."""
    if kind == "events":
        return Listeners(counting)
    if kind == "floor":
        return Floor(receivers)
    return None


# -- rounds --------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    title: str
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {phase: [] for phase in PHASES}
    )  # ms per PER_ROWS rows, one per round

    def best(self, phase: str) -> float:
        return harness.best(self.samples[phase])

    def median(self, phase: str) -> float:
        return harness.median(self.samples[phase])


def run_database(db: Database, cfg: Config) -> dict[str, Result]:
    """Check every variant once, then sample them round-robin."""
    texts = [f"todo number {i}" for i in range(cfg.rows)]
    for kind in VARIANTS:
        check(db, cfg, texts, kind)
    check_no_listeners()
    noop = Receivers()
    listening = {kind: variant_listeners(kind, noop) for kind in VARIANTS}
    results = {kind: Result(kind, VARIANT_TITLES[kind]) for kind in VARIANTS}
    scale = PER_ROWS / cfg.rows / 1e6  # ns for cfg.rows -> ms per PER_ROWS
    for kind in harness.turns(VARIANTS, cfg.rounds):
        receivers = noop if kind == "receivers" else None
        with variant(kind, receivers, listening[kind]):
            insert_ns, update_ns = sample(db, cfg, texts)
        samples = results[kind].samples
        samples["insert"].append(insert_ns * scale)
        samples["update"].append(update_ns * scale)
        samples["total"].append((insert_ns + update_ns) * scale)
    return results


# -- reporting -----------------------------------------------------------------------------


def print_database(db: Database, cfg: Config, results: dict[str, Result]) -> None:
    base, peer = results["plain"], results["events"]
    harness.heading(f"{db.kind}: {db.title}")
    print(
        f"   ms per {PER_ROWS:,} rows, fastest of {cfg.rounds} round(s), and the ratio to plain;\n"
        f"   last line: integration with receivers against SQLAlchemy's own events"
    )
    columns = [harness.Column("case", 44, "<")]
    for phase in PHASES:
        columns += [harness.Column(phase, 10), harness.Column("", 6)]
    rows = []
    for kind, result in results.items():
        cells = [result.title]
        for phase in PHASES:
            ratio = "" if kind == "plain" else f"{result.best(phase) / base.best(phase):.2f}x"
            cells += [f"{result.best(phase):,.1f}", ratio]
        rows.append(cells)
    receivers = results["receivers"]
    cells = [PEER_TITLE]
    for phase in PHASES:
        cells += ["", f"{receivers.best(phase) / peer.best(phase):.2f}x"]
    harness.print_table(columns, [*rows, cells])


# (variant, baseline) pairs of the summary, in its order; the target applies to the
# total of ("receivers", "plain").
COMPARISONS = (
    ("enabled", "plain"),
    ("receivers", "plain"),
    ("floor", "plain"),
    ("events", "plain"),
    ("receivers", "floor"),
    ("receivers", "events"),
)


def summarize(all_results: dict[str, dict[str, Result]]) -> list[dict[str, Any]]:
    """One row per database, comparison and phase."""
    rows = []
    for kind_db, results in all_results.items():
        for kind, baseline in COMPARISONS:
            base = results[baseline]
            for phase in PHASES:
                ratio = results[kind].best(phase) / base.best(phase)
                paired = harness.median(
                    harness.paired_ratios(base.samples[phase], results[kind].samples[phase])
                )
                is_target = (kind, baseline, phase) == ("receivers", "plain", "total")
                if is_target:
                    target = TARGET.text
                else:
                    target = "(peer)" if baseline == "events" else "(info)"
                row: dict[str, Any] = {
                    "database": kind_db,
                    "variant": kind,
                    "baseline": baseline,
                    "phase": phase,
                    "ratio": ratio,
                    "paired_median_ratio": paired,
                    "added_ms": results[kind].best(phase) - base.best(phase),
                    "target": target,
                }
                row["result"] = TARGET.verdict(ratio) if is_target else "-"
                rows.append(row)
    return rows


def summary_label(row: dict[str, Any]) -> str:
    kind = row["variant"]
    if row["baseline"] != "plain":
        kind = f"{kind} vs {row['baseline']}"
    return f"{row['database']}, {kind}"


SUMMARY_COLUMNS = [
    harness.Column("database, variant", 33, "<"),
    harness.Column("phase", 8, "<"),
    harness.Column("ratio", 8),
    harness.Column("paired", 9),
    harness.Column("added ms", 10),
    *harness.verdict_columns(10),
]


def print_summary(rows: list[dict[str, Any]]) -> None:
    harness.heading(
        f"SUMMARY: against plain SQLAlchemy; target: inserting and updating {PER_ROWS:,} rows\n"
        f"   with 1 receiver per signal is at most {100 * (TARGET.limit - 1):.0f}% slower "
        f"({TARGET.text})"
    )
    harness.print_table(
        SUMMARY_COLUMNS,
        (
            [
                summary_label(row),
                row["phase"],
                f"{row['ratio']:.3f}x",
                f"{row['paired_median_ratio']:.3f}x",
                f"{row['added_ms']:+.1f}",
                row["target"],
                row["result"],
            ]
            for row in rows
        ),
    )
    print(
        f"   (ratio: fastest round against fastest round, the verdict's figure; paired: the\n"
        f"   median over rounds of the ratio to the baseline's run of the same round; added ms:\n"
        f"   per {PER_ROWS:,} rows. The baseline is plain SQLAlchemy, except on the rows\n"
        f'   "receivers vs floor", the integration with 1 receiver per signal against the\n'
        f"   floor (the same receivers called from SQLAlchemy's events, no dispatcher), and\n"
        f'   "receivers vs events", against plain SQLAlchemy with 1 listener per event.)'
    )


def header(cfg: Config, postgresql: str | None) -> dict[str, Any]:
    versions = {name: harness.version(name) for name in ("tocsin", "sqlalchemy", "psycopg")}
    expire = "True (the default: the update phase also refreshes each row)"
    info = harness.header(
        {"tocsin": versions["tocsin"], "SQLAlchemy": versions["sqlalchemy"], "SQLite": SQLITE},
        before=[("", f"PostgreSQL {postgresql} (psycopg {versions['psycopg']})")]
        if postgresql
        else [],
        after=[
            (
                "mode",
                f"{cfg.name}: {cfg.rows:,} rows inserted then updated per sample, "
                f"{cfg.rounds} round(s) of the variants taking turns, fastest reported, "
                f"gc disabled while timing",
            ),
            ("session", f"expire_on_commit={expire if cfg.expire_on_commit else False}"),
        ],
    )
    return {
        **info,
        "tocsin": versions["tocsin"],
        "sqlalchemy": versions["sqlalchemy"],
        "sqlite": SQLITE,
        "postgresql": postgresql,
        "psycopg": versions["psycopg"] if postgresql else None,
    }


def database_json(kind: str, results: dict[str, Result]) -> dict[str, Any]:
    """What the JSON file keeps of one database: every variant's samples, by phase."""
    return {
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
        # the integration with receivers over SQLAlchemy's own events
        "receivers_vs_events": {
            phase: results["receivers"].best(phase) / results["events"].best(phase)
            for phase in PHASES
        },
    }


def main(argv: list[str] | None = None) -> int:
    args_parser = harness.parser(__doc__)
    args_parser.add_argument(
        "--db",
        choices=(*DATABASES, "sqlite", "all"),
        default="all",
        help="which database (sqlite: memory and file; all, the default: the three, "
        "PostgreSQL only if the server can be reached)",
    )
    config = harness.config_options(
        args_parser, QUICK, DEFAULT, rows="rows per sample", rounds="samples per variant"
    )
    args_parser.add_argument(
        "--expire-on-commit",
        action="store_true",
        help="the session's default: the update phase then also reloads every row",
    )
    args = args_parser.parse_args(argv)
    cfg = config(args, expire_on_commit=args.expire_on_commit)
    kinds: tuple[str, ...] = {"all": DATABASES, "sqlite": DATABASES[:2]}.get(args.db, (args.db,))
    postgresql: str | None = None
    unreachable = ""  # why PostgreSQL is left out of the default run
    if "postgresql" in kinds:
        try:
            postgresql = postgres_version()
        except Exception as err:  # any failure to connect: no server here
            reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            if args.db == "postgresql":
                args_parser.error(f"PostgreSQL is not reachable at {POSTGRES_URL}: {reason}")
            unreachable = f"not reachable at {POSTGRES_URL}: {reason}"
            kinds = tuple(kind for kind in kinds if kind != "postgresql")

    started = time.perf_counter()
    info: dict[str, Any] = header(cfg, postgresql)
    if unreachable:
        harness.line(
            "note", f"PostgreSQL skipped: {unreachable} (TOCSIN_POSTGRES_URL sets the server)"
        )
    check_no_listeners()
    all_results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sqlalchemy-") as directory:
        for kind in kinds:
            db = Database(kind, Path(directory))
            try:
                all_results[kind] = run_database(db, cfg)
            finally:
                db.close()
            print_database(db, cfg, all_results[kind])
    rows = summarize(all_results)
    print_summary(rows)
    harness.finish(
        started,
        args.json,
        cfg,
        info,
        per_rows=PER_ROWS,
        target_ratio=TARGET.limit,
        skipped={"postgresql": unreachable} if unreachable else {},
        databases={kind: database_json(kind, results) for kind, results in all_results.items()},
        summary=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
