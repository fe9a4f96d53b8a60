"""``tocsin worker`` and ``tocsin dead-letters``: the Remote a module declares.

``tocsin worker myapp.remote`` imports the module(s), finds the one
:class:`~tocsin.remote.Remote` they define (or the one named with
``module:attribute``), and runs a :class:`~tocsin.remote.Worker` (an
:class:`~tocsin.remote.AsyncWorker` for an async transport) until SIGTERM
or Ctrl-C. ``tocsin dead-letters myapp.remote`` lists its dead letters, and
replays or discards them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._dead_letters import DeadLetter, DeadLetters
from ._remote import Remote
from ._worker import AsyncWorker, Worker, WorkerOptions
from .transports.base import AsyncTransport, Consumer, Group

__all__ = [
    "UsageError",
    "add_remote_commands",
    "dead_letters_arguments",
    "run_dead_letters",
    "run_status",
    "run_worker",
    "status_arguments",
    "worker_arguments",
]


class UsageError(Exception):
    """A command line that cannot run: a one-line message for the user."""


class _ImportFailed(Exception):
    """The app failed to import; its traceback has been printed."""


def add_remote_commands(
    commands: Any, importer: Callable[[str], ModuleType | None], usage_error: type[Exception]
) -> None:
    """Add ``worker`` and ``dead-letters`` to the ``tocsin`` command's subparsers."""
    _add_worker(commands, importer, usage_error)
    _add_status(commands, importer, usage_error)
    _add_dead_letters(commands, importer, usage_error)


def _with_remote(
    body: Callable[[Remote, argparse.Namespace], int],
    importer: Callable[[str], ModuleType | None],
    usage_error: type[Exception],
) -> Callable[[argparse.Namespace], int]:
    """A command that finds the modules' Remote and runs *body* with it: exit 1
    when a module failed to import, a one-line usage error (exit 2) otherwise."""

    def run(args: argparse.Namespace) -> int:
        try:
            return body(_find_remote(args.modules, importer), args)
        except UsageError as error:
            raise usage_error(str(error)) from None
        except _ImportFailed:
            return 1

    return run


def _add_worker(
    commands: Any, importer: Callable[[str], ModuleType | None], usage_error: type[Exception]
) -> None:
    worker = commands.add_parser(
        "worker",
        help="consume remote events and run their receivers here",
        description="Import the modules, find the Remote they define, and consume its "
        "stream as one consumer of a group until SIGTERM or Ctrl-C (the batch in hand is "
        "finished first). Name the Remote with module:attribute when a module defines "
        "several. See docs/scaling-out.md.",
    )
    worker.add_argument("modules", nargs="+", metavar="MODULE[:REMOTE]")
    worker_arguments(worker)
    worker.set_defaults(command=_with_remote(run_worker, importer, usage_error))


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options (all but the modules), for ``tocsin worker`` and
    Django's ``manage.py tocsin_worker``."""
    parser.add_argument("--group", default="tocsin", help="consumer group (default: tocsin)")
    parser.add_argument(
        "--consumer",
        metavar="NAME",
        help="this worker's name in the group (default: host-pid-random)",
    )
    parser.add_argument(
        "--batch", metavar="N", type=int, default=100, help="events read at a time (default: 100)"
    )
    parser.add_argument(
        "--max-attempts",
        metavar="N",
        type=int,
        default=5,
        help="failed runs before dead-lettering (default: 5)",
    )
    parser.add_argument(
        "--max-kills",
        metavar="N",
        type=int,
        default=2,
        help="runs alone that killed the worker before dead-lettering as poison (default: 2)",
    )
    parser.add_argument(
        "--retry-delay",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="bound of the first retry's random delay, in seconds (default: 1)",
    )
    parser.add_argument(
        "--retry-backoff",
        metavar="FACTOR",
        type=float,
        default=2.0,
        help="factor the delay grows by with each retry (default: 2)",
    )
    parser.add_argument(
        "--max-retry-delay",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="longest delay between retries, in seconds (default: 60)",
    )
    parser.add_argument(
        "--claim-after",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="seconds before taking over another consumer's pending events (default: 60)",
    )
    parser.add_argument(
        "--block",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="seconds one read waits for events (default: 1)",
    )
    parser.add_argument(
        "--dead-stream", metavar="STREAM", help="the dead-letter stream (default: STREAM:dead)"
    )
    parser.add_argument(
        "--relay-every",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="seconds between outbox relays, with an outbox (default: 5)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=int,
        default=1,
        help="events of a batch run at once, in threads (tasks when async) (default: 1)",
    )
    parser.add_argument(
        "--trim-every",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="seconds between trims of acknowledged events from the stream (default: 60)",
    )
    parser.add_argument(
        "--no-trim", action="store_true", help="never trim the stream (leave it to you)"
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", default="INFO", help="logging level (default: INFO)"
    )


def run_worker(remote: Remote, args: argparse.Namespace) -> int:
    """Run a worker for *remote* with the options of :func:`worker_arguments`."""
    level = _level(args.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _run(remote, args)


def _add_status(
    commands: Any, importer: Callable[[str], ModuleType | None], usage_error: type[Exception]
) -> None:
    status = commands.add_parser(
        "status",
        help="show a remote's stream: its groups, pending events, backlog, dead letters",
        description="Import the modules, find the Remote they define, and print its stream's "
        "length, each consumer group's consumers (idle ones too, with their pending events "
        "and idle time), pending events (given to a worker, not yet "
        "acknowledged; with the oldest one's age) and waiting events (not given to any worker "
        "yet), and the number of dead letters.",
    )
    status.add_argument("modules", nargs="+", metavar="MODULE[:REMOTE]")
    status_arguments(status)
    status.set_defaults(command=_with_remote(run_status, importer, usage_error))


def status_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tocsin status`` (all but the modules)."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_status(remote: Remote, args: argparse.Namespace) -> int:
    """Print *remote*'s status, as text or JSON (``args.json``)."""
    report = _status(remote)
    print(json.dumps(report, indent=2) if args.json else _status_text(report))
    return 0


def _status(remote: Remote) -> dict[str, Any]:
    transport = remote.transport
    dead_stream = f"{remote.stream}:dead"
    if isinstance(transport, AsyncTransport):
        return asyncio.run(_astatus(transport, remote.stream, dead_stream))
    groups = transport.groups(remote.stream)
    oldest = [transport.pending(remote.stream, g.name).oldest for g in groups]
    members = [transport.consumers(remote.stream, g.name) for g in groups]
    return _report(
        remote.stream, transport.length(remote.stream), groups, oldest, members,
        dead_stream, transport.length(dead_stream),
    )  # fmt: skip


async def _astatus(transport: AsyncTransport, stream: str, dead_stream: str) -> dict[str, Any]:
    groups = await transport.groups(stream)
    oldest = [(await transport.pending(stream, g.name)).oldest for g in groups]
    members = [await transport.consumers(stream, g.name) for g in groups]
    length, dead = await transport.length(stream), await transport.length(dead_stream)
    return _report(stream, length, groups, oldest, members, dead_stream, dead)


def _report(
    stream: str,
    length: int,
    groups: list[Group],
    oldest: list[str | None],
    members: list[list[Consumer]],
    dead_stream: str,
    dead: int,
) -> dict[str, Any]:
    now = time.time()
    return {
        "stream": stream,
        "length": length,
        "groups": [
            {
                "name": group.name,
                "consumers": group.consumers,
                # Each one, idle ones too: a worker that waits for events is one.
                "consumer_list": [
                    {"name": c.name, "pending": c.pending, "idle": round(c.idle, 1)}
                    for c in consumers
                ],
                "pending": group.pending,
                "waiting": group.waiting,
                "oldest_pending": first,
                # A stream id starts with the time it was added, in milliseconds.
                "oldest_pending_age": None
                if first is None
                else round(max(0.0, now - int(first.partition("-")[0]) / 1000), 1),
            }
            for group, first, consumers in zip(groups, oldest, members, strict=True)
        ],
        "dead_stream": dead_stream,
        "dead_letters": dead,
    }


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"stream {report['stream']}: {report['length']:,} event(s)"]
    if not report["groups"]:
        lines.append("  no consumer group yet: no worker has started")
    for group in report["groups"]:
        waiting = "?" if group["waiting"] is None else f"{group['waiting']:,}"
        line = (
            f"  group {group['name']}: {group['consumers']} consumer(s), "
            f"{group['pending']:,} pending, {waiting} waiting"
        )
        if group["oldest_pending"] is not None:
            line += f" (oldest pending sent {group['oldest_pending_age']} s ago)"
        lines.append(line)
        for consumer in group["consumer_list"]:
            lines.append(
                f"    consumer {consumer['name']}: {consumer['pending']:,} pending, "
                f"idle {consumer['idle']} s"
            )
    lines.append(f"dead letters {report['dead_stream']}: {report['dead_letters']:,}")
    return "\n".join(lines)


def _add_dead_letters(
    commands: Any, importer: Callable[[str], ModuleType | None], usage_error: type[Exception]
) -> None:
    dead = commands.add_parser(
        "dead-letters",
        help="list, replay or discard the events workers gave up on",
        description="Import the modules, find the Remote they define, and list the events in "
        "its dead-letter stream (<stream>:dead) with their errors; or put them back on their "
        "stream (--replay) once the cause is fixed, or remove them (--discard).",
    )
    dead.add_argument("modules", nargs="+", metavar="MODULE[:REMOTE]")
    dead_letters_arguments(dead)
    dead.set_defaults(command=_with_remote(run_dead_letters, importer, usage_error))


def dead_letters_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tocsin dead-letters`` (all but the modules)."""
    parser.add_argument(
        "--stream", metavar="STREAM", help="the dead-letter stream (default: STREAM:dead)"
    )
    parser.add_argument(
        "--limit", metavar="N", type=int, default=100, help="letters listed (default: 100)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--replay", nargs="+", metavar="ID", help="replay these dead letters")
    action.add_argument("--replay-all", action="store_true", help="replay every dead letter")
    action.add_argument("--discard", nargs="+", metavar="ID", help="remove these for good")
    action.add_argument("--discard-all", action="store_true", help="remove every dead letter")


def run_dead_letters(remote: Remote, args: argparse.Namespace) -> int:
    """List, replay or discard *remote*'s dead letters, as *args* say."""
    _check_limit(args.limit)
    letters = DeadLetters(remote, stream=args.stream)
    try:
        return _dead_letters(letters, args)
    except LookupError as error:
        raise UsageError(str(error).strip("'\"")) from None


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")


def _dead_letters(letters: DeadLetters, args: argparse.Namespace) -> int:
    is_async = isinstance(letters.remote.transport, AsyncTransport)
    replay = None if args.replay_all else args.replay
    discard = None if args.discard_all else args.discard
    if args.replay or args.replay_all:
        count = asyncio.run(letters.areplay(replay)) if is_async else letters.replay(replay)
        print(f"replayed {count} dead letter(s) from {letters.stream}")
        return 0
    if args.discard or args.discard_all:
        count = asyncio.run(letters.adiscard(discard)) if is_async else letters.discard(discard)
        print(f"discarded {count} dead letter(s) from {letters.stream}")
        return 0
    if is_async:
        listed = asyncio.run(letters.alist(count=args.limit))
        total = asyncio.run(letters.acount())
    else:
        listed, total = letters.list(count=args.limit), letters.count()
    if args.json:
        print(
            json.dumps(
                {"stream": letters.stream, "total": total, "letters": [_json(d) for d in listed]},
                indent=2,
            )
        )
    else:
        print(f"{letters.stream}: {total} dead letter(s)")
        for letter in listed:
            print(_line(letter))
        if total > len(listed):
            print(f"... and {total - len(listed)} more (--limit)")
    return 0


def _what(letter: DeadLetter) -> str:
    event = letter.event
    if event is None:
        return "(unreadable)"
    return f"receiver {event.receiver}" if event.receiver else f"signal {event.signal}"


def _line(letter: DeadLetter) -> str:
    sent = ""
    if letter.event is not None:
        sent = datetime.datetime.fromtimestamp(letter.event.time).isoformat(" ", "seconds")
    return f"{letter.id}  {sent}  {_what(letter)}  attempts={letter.attempts}\n    {letter.error}"


def _json(letter: DeadLetter) -> dict[str, Any]:
    event = letter.event
    return {
        "id": letter.id,
        "event_id": event.id if event else None,
        "signal": event.signal if event else None,
        "receiver": event.receiver if event else None,
        "sent": event.time if event else None,
        "attempts": letter.attempts,
        "error": letter.error,
        "unreadable": letter.unreadable,
        "source_stream": letter.source_stream,
        "source_id": letter.source_id,
        "group": letter.group,
    }


def _level(name: str) -> int:
    level = logging.getLevelName(str(name).upper())
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {name!r}")
    return level


def _find_remote(targets: list[str], importer: Callable[[str], ModuleType | None]) -> Remote:
    named: list[Remote] = []
    found: dict[int, tuple[str, Remote]] = {}
    for target in targets:
        module_name, _, attribute = target.partition(":")
        module = importer(module_name)
        if module is None:
            raise _ImportFailed
        if attribute:
            remote = getattr(module, attribute, None)
            if not isinstance(remote, Remote):
                raise UsageError(f"{target} is not a Remote (it is {type(remote).__name__})")
            named.append(remote)
            continue
        for name, value in vars(module).items():
            if isinstance(value, Remote):
                found.setdefault(id(value), (f"{module.__name__}:{name}", value))
    if named:
        if len({id(r) for r in named}) > 1:
            raise UsageError(
                "name one Remote: several module:attribute targets name different ones"
            )
        return named[0]
    if not found:
        raise UsageError(
            "no Remote found in " + ", ".join(targets) + " (define remote = Remote(...) at "
            "module level, or name it with module:attribute)"
        )
    if len(found) > 1:
        names = ", ".join(sorted(name for name, _ in found.values()))
        raise UsageError(f"several Remotes found ({names}): name one with module:attribute")
    return next(iter(found.values()))[1]


def _run(remote: Remote, args: argparse.Namespace) -> int:
    options: WorkerOptions = {
        "group": args.group,
        "consumer": args.consumer,
        "batch": args.batch,
        "max_attempts": args.max_attempts,
        "max_kills": args.max_kills,
        "retry_delay": args.retry_delay,
        "retry_backoff": args.retry_backoff,
        "max_retry_delay": args.max_retry_delay,
        "claim_after": args.claim_after,
        "block": args.block,
        "dead_stream": args.dead_stream,
        "relay_every": args.relay_every,
        "trim_every": None if args.no_trim else args.trim_every,
        "concurrency": args.concurrency,
    }
    try:
        if isinstance(remote.transport, AsyncTransport):
            async_worker = AsyncWorker(remote, **options)
            _announce(async_worker)
            asyncio.run(async_worker.run())
        else:
            worker = Worker(remote, **options)
            _announce(worker)
            worker.run()
    except ValueError as error:
        print(f"tocsin worker: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _announce(worker: Worker | AsyncWorker) -> None:
    remote = worker.remote
    logging.getLogger("tocsin.worker").info(
        "Worker %s consuming %r as group %r: %d signal(s), %d receiver(s)",
        worker.consumer,
        worker.stream,
        worker.group,
        len(remote.signals),
        len(remote.receivers),
    )
