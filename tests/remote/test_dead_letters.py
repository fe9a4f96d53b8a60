"""Dead letters: list them, replay them once the cause is fixed, or discard them."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from tocsin import Signal
from tocsin.__main__ import main
from tocsin.remote import AsyncMemoryTransport, DeadLetters, MemoryTransport, Remote, Worker

invoice_due = Signal()
STREAM = "billing"


@pytest.fixture
def remote() -> Iterator[Remote]:
    with MemoryTransport() as transport:
        yield Remote(transport, stream=STREAM)
    invoice_due.receivers = []


def kill(remote: Remote, *invoices: str) -> list[str]:
    """Send events for *invoices* that fail until they are dead letters; their event ids."""
    name = f"{__name__}.invoice_due"
    ids = []

    def mail_server_down(**kwargs: Any) -> None:
        raise ConnectionError("mail server is down")

    worker = Worker(remote, max_attempts=2, retry_delay=0.001, block=0.001)
    for dead, invoice in enumerate(invoices, 1):  # one at a time: retries are jittered
        remote.publish(invoice_due, name=name)
        [(_, event)] = invoice_due.send(None, invoice=invoice)
        ids.append(event.id)
        remote.disconnect()
        invoice_due.connect(mail_server_down)
        while worker.stats.dead < dead:
            worker.run_once()
        invoice_due.disconnect(mail_server_down)
    return ids


def test_list_reads_each_dead_letter_with_its_event_and_error(remote: Remote) -> None:
    """Each letter has the event read back, the error, the attempts and where it came from."""
    event_ids = kill(remote, "INV-1", "INV-2")
    dead = DeadLetters(remote)
    letters = dead.list()
    assert dead.count() == 2
    assert [letter.event.kwargs for letter in letters if letter.event] == [
        {"invoice": "INV-1"},
        {"invoice": "INV-2"},
    ]
    assert [letter.event.id for letter in letters if letter.event] == event_ids
    first = letters[0]
    assert first.error == "ConnectionError: mail server is down"
    assert (first.attempts, first.source_stream, first.group) == (2, STREAM, "tocsin")
    assert first.unreadable is None


def test_replay_puts_every_letter_back_with_its_id(remote: Remote) -> None:
    """Replayed events keep their ids and are handled like new ones."""
    event_ids = kill(remote, "INV-1", "INV-2")
    assert DeadLetters(remote).replay() == 2
    assert DeadLetters(remote).count() == 0
    handled: list[str] = []
    invoice_due.connect(lambda **kw: handled.append(kw["invoice"]), weak=False)
    worker = Worker(remote, block=0.001)
    worker.run_once()
    assert handled == ["INV-1", "INV-2"]
    replayed = [remote.decode(m.payload).id for m in remote.transport.read(STREAM)][-2:]  # type: ignore[union-attr]
    assert replayed == event_ids


def test_replay_and_discard_take_ids(remote: Remote) -> None:
    """Only the named letters are replayed or discarded."""
    kill(remote, "INV-1", "INV-2", "INV-3")
    dead = DeadLetters(remote)
    first, second, third = (letter.id for letter in dead.list())
    assert dead.replay([second]) == 1
    assert dead.discard([first]) == 1
    assert [letter.id for letter in dead.list()] == [third]
    assert dead.discard() == 1
    assert dead.count() == 0


def test_an_unknown_id_changes_nothing(remote: Remote) -> None:
    """LookupError names the ids that are not dead letters, before anything is replayed."""
    kill(remote, "INV-1")
    dead = DeadLetters(remote)
    [letter] = dead.list()
    with pytest.raises(LookupError, match="not in the dead-letter stream: 1-1"):
        dead.replay([letter.id, "1-1"])
    assert dead.count() == 1
    with pytest.raises(TypeError, match="single string"):
        dead.discard(letter.id)


def test_an_unreadable_letter_is_listed_with_why(remote: Remote) -> None:
    """A payload the worker could not read is listed with event None and the reason."""
    remote.transport.publish(STREAM, b"{garbage")
    Worker(remote, block=0.001).run_once()
    [letter] = DeadLetters(remote).list()
    assert letter.event is None
    assert letter.payload == b"{garbage"
    assert letter.unreadable is not None
    assert "not valid JSON" in letter.unreadable


def test_dead_letters_checks_its_arguments(remote: Remote) -> None:
    """A bad remote or stream, or the wrong flavour of method, raise clearly."""
    with pytest.raises(TypeError, match="Remote"):
        DeadLetters(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream"):
        DeadLetters(remote, stream="")
    with pytest.raises(TypeError, match="a-prefixed"):
        DeadLetters(Remote(AsyncMemoryTransport())).list()
    with pytest.raises(TypeError, match="without 'a'"):
        asyncio.run(DeadLetters(remote).alist())


def test_the_async_methods_do_the_same() -> None:
    """alist, acount, areplay and adiscard work on an async transport."""

    async def main() -> tuple[int, int, int, int]:
        async with AsyncMemoryTransport() as transport:
            remote = Remote(transport, stream=STREAM)
            await transport.ensure_group(STREAM, "g")
            for payload in (b"one", b"two"):
                await transport.publish(STREAM, payload)
            for message in await transport.consume(STREAM, "g", "c", count=2):
                await transport.dead_letter(STREAM, "g", message, f"{STREAM}:dead", error="e")
            dead = DeadLetters(remote)
            listed = len(await dead.alist())
            first = (await dead.alist())[0].id
            replayed = await dead.areplay([first])
            discarded = await dead.adiscard()
            return listed, replayed, discarded, await dead.acount()

    assert asyncio.run(main()) == (2, 1, 1, 0)


APP = """\
from tocsin.remote import Remote
from tocsin.remote import MemoryTransport

remote = Remote(MemoryTransport(), stream="billing")
remote.transport.ensure_group("billing", "tocsin")
for payload in (b'{"v": 1}', b"{garbage"):
    remote.transport.publish("billing", payload)
for message in remote.transport.consume("billing", "tocsin", "w", count=2):
    remote.transport.dead_letter("billing", "tocsin", message, "billing:dead", error="boom")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """deadapp.py, whose remote has two dead letters, in the current directory."""
    (tmp_path / "deadapp.py").write_text(APP, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("deadapp", None)


def test_the_command_lists_dead_letters(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tocsin dead-letters MODULE` prints each letter and its error."""
    assert main(["dead-letters", "deadapp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("billing:dead: 2 dead letter(s)\n")
    assert out.count("(unreadable)") == 2
    assert "    boom" in out


def test_the_command_prints_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives programs the same."""
    assert main(["dead-letters", "deadapp", "--json", "--limit", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["stream"], printed["total"], len(printed["letters"])) == ("billing:dead", 2, 1)
    assert printed["letters"][0]["error"] == "boom"


def test_the_command_replays_and_discards(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--replay ID, --discard-all act and say what they did; an unknown id is a usage error."""
    assert main(["dead-letters", "deadapp", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["letters"][0]["id"]
    assert main(["dead-letters", "deadapp", "--replay", first]) == 0
    assert capsys.readouterr().out == "replayed 1 dead letter(s) from billing:dead\n"
    assert main(["dead-letters", "deadapp", "--replay", "1-1"]) == 2
    assert "not in the dead-letter stream: 1-1" in capsys.readouterr().err
    assert main(["dead-letters", "deadapp", "--discard-all"]) == 0
    assert capsys.readouterr().out == "discarded 1 dead letter(s) from billing:dead\n"
    assert main(["dead-letters", "deadapp", "--limit", "0"]) == 2


def test_status_shows_the_stream_its_groups_and_dead_letters(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tocsin status MODULE` prints the stream's length, each group's state and the dead
    letters; --json gives the same to programs."""
    assert main(["status", "deadapp"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stream billing: 2 event(s)"
    assert out[1] == "  group tocsin: 1 consumer(s), 0 pending, 0 waiting"
    assert out[2].startswith("    consumer w: 0 pending, idle ")
    assert out[3] == "dead letters billing:dead: 2"
    assert main(["status", "deadapp", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == [
        {
            "name": "tocsin",
            "consumers": 1,
            "consumer_list": [{"name": "w", "pending": 0, "idle": ANY}],
            "pending": 0,
            "waiting": 0,
            "oldest_pending": None,
            "oldest_pending_age": None,
        }
    ]
    assert (report["length"], report["dead_letters"]) == (2, 2)


def test_status_of_a_stream_nobody_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any worker started, status says so, and shows what waits and what is pending."""
    (tmp_path / "quietapp.py").write_text(
        "from tocsin.remote import Remote\n"
        "from tocsin.remote import MemoryTransport\n"
        "remote = Remote(MemoryTransport(), stream='quiet')\n"
        "remote.transport.publish_many('quiet', [b'1', b'2', b'3'])\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    importlib.invalidate_caches()
    try:
        assert main(["status", "quietapp"]) == 0
        assert "no consumer group yet" in capsys.readouterr().out
        app = sys.modules["quietapp"]
        app.remote.transport.ensure_group("quiet", "tocsin")
        app.remote.transport.consume("quiet", "tocsin", "w", count=1)
        assert main(["status", "quietapp"]) == 0
        line = capsys.readouterr().out.splitlines()[1]
        assert line.startswith("  group tocsin: 1 consumer(s), 1 pending, 2 waiting (oldest")
        # A worker that joined and waits is listed, with nothing pending.
        app.remote.transport.ensure_group("quiet", "tocsin", consumer="idle-worker")
        assert main(["status", "quietapp"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[1].startswith("  group tocsin: 2 consumer(s), 1 pending, 2 waiting")
        assert out[2].startswith("    consumer idle-worker: 0 pending, idle ")
        assert out[3].startswith("    consumer w: 1 pending, idle ")
    finally:
        sys.modules.pop("quietapp", None)
