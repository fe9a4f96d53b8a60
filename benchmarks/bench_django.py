#!/usr/bin/env python3
"""Measure what tocsin.contrib.django changes for a Django project's signals.

    python benchmarks/bench_django.py                  # the full run (about a minute)
    python benchmarks/bench_django.py --quick          # a second or two: smoke test only
    python benchmarks/bench_django.py --json out.json  # also write every sample

The variants, the baselines (floor, minimal) and the target: benchmarks/README.md
("Django's signals with and without tocsin.contrib.django").
"""

from __future__ import annotations

import functools
import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db import connection, models  # noqa: E402
from django.db.models.signals import post_save, pre_save  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

import _harness as harness  # noqa: E402
import tocsin  # noqa: E402
from tocsin.contrib.django import install, installed, uninstall  # noqa: E402

VARIANTS = ("django", "tocsin")
FLOOR = "floor"
MINIMAL = "minimal"
RECEIVERS = (1, 10)
TARGET = harness.Target(2.0, at_least=True)  # Django's signal cost per save, at least halved


class Item(models.Model):  # type: ignore[misc]  # Django has no type hints
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "bench"


def save_view(request: HttpRequest) -> HttpResponse:
    ITEM.save()
    return HttpResponse(b"saved")


def ping_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"pong")


urlpatterns = [path("save/", save_view), path("ping/", ping_view)]
ITEM = Item(name="item")
CALLS = [0]


def make_receiver(number: int) -> Callable[..., None]:
    def receiver(sender: Any = None, **kwargs: Any) -> None:
        CALLS[0] += 1

    receiver.__name__ = receiver.__qualname__ = f"receiver_{number}"
    return receiver


RECEIVER_FUNCTIONS = [make_receiver(n) for n in range(max(RECEIVERS))]


@contextmanager
def variant(kind: str, receivers: int) -> Iterator[None]:
    """The variant's dispatcher, with *receivers* receivers on post_save for Item."""
    if kind == "tocsin":
        install()
    try:
        for receiver in RECEIVER_FUNCTIONS[:receivers]:
            post_save.connect(receiver, sender=Item, weak=False)
        yield
    finally:
        for receiver in RECEIVER_FUNCTIONS:
            post_save.disconnect(receiver, sender=Item)
        if kind == "tocsin":
            uninstall()


def environ(path_info: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }


def requests_loop(path_info: str) -> Callable[[int], None]:
    application = WSGIHandler()
    env = environ(path_info)

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{path_info}: {status}")

    def run(count: int) -> None:
        for _ in range(count):
            response = application(env, start_response)
            b"".join(response)
            response.close()  # request_finished

    return run


NAMED = {"instance": ITEM, "raw": False, "using": "default", "update_fields": None}


def floor_loop(receivers: int) -> Callable[[int], None]:
    """The receivers called directly, as a send calls them: the least any dispatcher spends."""
    functions = RECEIVER_FUNCTIONS[:receivers]
    named = NAMED

    def run(count: int) -> None:
        for _ in range(count):
            for receiver in functions:
                receiver(signal=post_save, sender=Item, created=False, **named)

    return run


def minimal_loop(per_save: bool, receivers: int) -> Callable[[int], None]:
    """The sends made by a minimal send() function with Django's calling convention."""
    functions = RECEIVER_FUNCTIONS[:receivers]
    named = NAMED

    def send(sender: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return [(r, r(signal=post_save, sender=sender, **kwargs)) for r in functions]

    def send_nothing(sender: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return []

    def run(count: int) -> None:
        for _ in range(count):
            if per_save:
                send_nothing(Item, **named)
            send(Item, created=False, **named)

    return run


def sends_loop(per_save: bool) -> Callable[[int], None]:
    named = NAMED

    def run(count: int) -> None:
        send_pre, send_post = pre_save.send, post_save.send
        for _ in range(count):
            if per_save:
                send_pre(Item, **named)
            send_post(Item, created=False, **named)

    return run


# (name, per what, the loop, receivers on post_save)
SCENARIOS: list[tuple[str, str, Callable[[], Callable[[int], None]], int]] = [
    ("request: save, 1 receiver", "req/s", lambda: requests_loop("/save/"), 1),
    ("request: save, 10 receivers", "req/s", lambda: requests_loop("/save/"), 10),
    ("request: request signals only", "req/s", lambda: requests_loop("/ping/"), 0),
    ("post_save.send, 1 receiver", "ns/send", lambda: sends_loop(False), 1),
    ("post_save.send, 10 receivers", "ns/send", lambda: sends_loop(False), 10),
    ("signals per save, 1 receiver", "ns/save", lambda: sends_loop(True), 1),
    ("signals per save, 10 receivers", "ns/save", lambda: sends_loop(True), 10),
]


def check(kind: str, receivers: int, loop: Callable[[int], None]) -> None:
    """Untimed: the variant dispatches as it should, and reaches its receivers."""
    on_tocsin = kind == "tocsin"
    if installed() is not on_tocsin or isinstance(post_save, tocsin.Signal) is not on_tocsin:
        raise RuntimeError(f"{kind}: post_save is not on the expected dispatcher")
    CALLS[0] = 0
    loop(2)
    if CALLS[0] != 2 * receivers:
        raise RuntimeError(f"{kind}: {CALLS[0]} receiver calls, expected {2 * receivers}")


def runner(loop: Callable[[int], None]) -> harness.Runner:
    """*loop* timed: the harness's samples are ns."""

    def run(count: int) -> int:
        start = time.perf_counter_ns()
        loop(count)
        return time.perf_counter_ns() - start

    return run


def measure(rounds: int, requests: int, sends: int) -> list[dict[str, Any]]:
    results = []
    for name, unit, make_loop, receivers in SCENARIOS:
        is_send = unit != "req/s"
        count = sends if is_send else requests
        kinds = (*VARIANTS, FLOOR, MINIMAL) if is_send else VARIANTS
        baselines = {
            FLOOR: functools.partial(floor_loop, receivers),
            MINIMAL: functools.partial(minimal_loop, unit == "ns/save", receivers),
        }
        seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
        for kind in harness.turns(kinds, rounds):
            with variant(kind, 0 if kind in baselines else receivers):
                loop = baselines.get(kind, make_loop)()
                check(kind, receivers, loop)
                loop(max(1, count // 10))  # warm-up
                seconds[kind].append(harness.timed(runner(loop), count) / 1e9)
        fastest = {kind: harness.best(seconds[kind]) for kind in kinds}
        row: dict[str, Any] = {
            "scenario": name,
            "unit": unit,
            "receivers": receivers,
            "count": count,
            "figures": {
                kind: fastest[kind] / count * 1e9 if is_send else count / fastest[kind]
                for kind in kinds
            },
            "speedup": fastest["django"] / fastest["tocsin"],
            "samples_s": seconds,
        }
        if is_send:
            figures = row["figures"]
            cost = {kind: figures[kind] - figures[FLOOR] for kind in VARIANTS}
            row["dispatch_ns"] = cost
            row["dispatch_speedup"] = _speedup(cost)
            own = {kind: figures[kind] - figures[MINIMAL] for kind in VARIANTS}
            row["dispatcher_ns"] = own
            row["dispatcher_speedup"] = _speedup(own)
        results.append(row)
    return results


def _speedup(cost: dict[str, float]) -> float | None:
    """Django's cost over tocsin's; None when either is nothing or less (a send measured
    as cheaper than its baseline: a ratio would mean nothing)."""
    if cost["django"] <= 0:
        return None
    return harness.ratio(cost["django"], cost["tocsin"])


def _ratio(speedup: float | None, cost: dict[str, float] | None = None) -> str:
    """The speed-up as printed. Without one: "below" when tocsin's cost is under the
    baseline's, "noise" when only Django's is (a short run that could not resolve it)."""
    if speedup is None and cost is not None and cost["tocsin"] > 0:
        return "noise"
    return harness.fmt_ratio(speedup, missing="below")


COLUMNS = harness.columns(("", 32), ("unit", 8), ("django", 12), ("tocsin", 12), ("speed-up", 10))


def _cells(row: dict[str, Any], figures: dict[str, float], speedup: float | None) -> list[str]:
    """A table's row: the scenario, its unit, Django's and tocsin's figures, the speed-up,
    then the baselines' figures where *figures* has them."""
    numbers = [f"{figures[kind]:,.1f}" for kind in (*VARIANTS, FLOOR, MINIMAL) if kind in figures]
    return [row["scenario"], row["unit"], *numbers[:2], _ratio(speedup, figures), *numbers[2:]]


def report(results: list[dict[str, Any]]) -> None:
    harness.heading("measured (best of the rounds)")
    baselines = [harness.Column(FLOOR, 12), harness.Column(MINIMAL, 12)]
    rows = [_cells(row, row["figures"], row["speedup"]) for row in results]
    harness.print_table([*COLUMNS, *baselines], rows, indent="  ")
    for title, key in (
        ("dispatch cost (the send's time minus the floor's)", "dispatch"),
        ("the dispatcher's own cost (the send's time minus the minimal send's)", "dispatcher"),
    ):
        harness.heading(title)
        rows = [
            _cells(row, row[f"{key}_ns"], row[f"{key}_speedup"])
            for row in results
            if f"{key}_ns" in row
        ]
        harness.print_table(COLUMNS, rows, indent="  ")
    harness.heading(
        f"SUMMARY (target: Django's signal cost per save at least halved, {TARGET.text})"
    )
    for row in results:
        if row["scenario"].startswith("signals per save"):
            speedup, cost = row["dispatch_speedup"], row["dispatch_ns"]
            measured = speedup
            if speedup is None and cost["tocsin"] <= 0:
                measured = math.inf  # tocsin's cost below the floor's meets any target
            own = _ratio(row["dispatcher_speedup"], row["dispatcher_ns"])
            print(
                f"  {row['scenario']:32}{_ratio(speedup, cost):>10}  {TARGET.verdict(measured)}"
                f"  (the dispatcher's own cost: {own})"
            )


@dataclass(frozen=True)
class Config:
    name: str
    rounds: int  # samples per variant
    requests: int  # per sample
    sends: int  # per sample


DEFAULT = Config("full", rounds=7, requests=2000, sends=20000)
QUICK = Config("quick", rounds=2, requests=20, sends=200)


def main(argv: list[str] | None = None) -> int:
    args_parser = harness.parser(__doc__)
    config = harness.config_options(
        args_parser,
        QUICK,
        DEFAULT,
        rounds="samples per variant",
        requests="requests per sample",
        sends="sends per sample",
    )
    args = args_parser.parse_args(argv)
    cfg = config(args)
    started = time.perf_counter()
    with connection.schema_editor() as editor:
        editor.create_model(Item)
    ITEM.save()
    info = harness.header(
        {"Django": django.get_version(), "tocsin": tocsin.__version__},
        after=[
            (
                "mode",
                f"{cfg.name}: {cfg.rounds} rounds, {cfg.requests} requests and {cfg.sends} "
                f"sends per sample{' (quick: noise)' if args.quick else ''}",
            )
        ],
    )
    results = measure(cfg.rounds, cfg.requests, cfg.sends)
    report(results)
    harness.finish(started, args.json, cfg, info, django=django.get_version(), results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
