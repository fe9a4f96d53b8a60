"""A stream entry is untrusted: workers import nothing it names, call nothing unregistered,
bound what they read, and refuse unsigned entries when the remote signs."""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin import Signal
from tocsin.exceptions import ForgedEventError, SerializationError
from tocsin.remote import DeadLetters, MemoryTransport, Message, Remote, Worker

KEY = b"a key of 32 bytes for the tests."
OLD_KEY = b"the key we used before this one"
STREAM = "untrusted"

paid = Signal()


def envelope(**fields: Any) -> bytes:
    """A well-formed envelope for the signal 'orders.paid', with *fields* changed."""
    base: dict[str, Any] = {
        "v": 1,
        "id": "e1",
        "signal": "orders.paid",
        "time": 0,
        "sender": None,
        "kwargs": {"order_id": 7},
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.fixture
def calls() -> Iterator[list[dict[str, Any]]]:
    """What the one receiver of the workers' signal was called with."""
    found: list[dict[str, Any]] = []

    def on_paid(sender: object, signal: Signal, **kwargs: Any) -> None:
        found.append(kwargs)

    paid.connect(on_paid, weak=False, dispatch_uid="test_security")
    yield found
    paid.disconnect(dispatch_uid="test_security")


@pytest.fixture(autouse=True)
def _publishers_removed() -> Iterator[None]:
    """The publishers each test's remotes connected to ``paid`` go with the test."""
    yield
    paid.receivers = []
    paid.sender_receivers_cache.clear()


def memory(remote: Remote) -> MemoryTransport:
    assert isinstance(remote.transport, MemoryTransport)
    return remote.transport


def make_remote(**options: Any) -> Remote:
    remote = Remote(MemoryTransport(), stream=STREAM, **options)
    remote.publish(paid, name="orders.paid")
    return remote


def run_one(remote: Remote, payload: bytes) -> DeadLetters:
    """Publish *payload* as a stream writer would, and let a worker take it."""
    memory(remote).publish(STREAM, payload)
    Worker(remote, block=0.01).run_once()
    return DeadLetters(remote)


@pytest.fixture
def no_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context manager that fails the test on any import inside its block."""
    armed: list[bool] = []
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if armed:
            raise AssertionError(f"a worker imported {name!r}")
        return real_import(name, *args, **kwargs)

    def guarded_import_module(name: str, package: str | None = None) -> Any:
        if armed:
            raise AssertionError(f"a worker imported {name!r}")
        return real_import_module(name, package)

    @contextlib.contextmanager
    def no_import_inside() -> Iterator[None]:
        armed.append(True)
        try:
            yield
        finally:
            armed.clear()

    monkeypatch.setattr(builtins, "__import__", guarded_import)
    monkeypatch.setattr(importlib, "import_module", guarded_import_module)
    return no_import_inside


CRAFTED = {
    "a $ref to os:system": (
        envelope(kwargs={"run": {"$ref": "os:system"}}),
        "unknown name 'os:system'",
    ),
    "a $ref to a module nobody imported": (
        envelope(sender={"$ref": "evil_module_xyz:payload"}),
        "unknown name 'evil_module_xyz:payload'",
    ),
    "an $enum of an unregistered class": (
        envelope(kwargs={"status": {"$enum": ["subprocess:Popen", "x"]}}),
        "unknown name 'subprocess:Popen'",
    ),
    "an unknown tag": (envelope(kwargs={"x": {"$pickle": "gASV"}}), "unknown tag 'pickle'"),
    "a signal not published here": (
        envelope(signal="os.system"),
        "unknown signal 'os.system': not published here",
    ),
    "a receiver not registered here": (
        envelope(receiver="os:system"),
        "unknown receiver 'os:system'",
    ),
    "an argument named sender": (envelope(kwargs={"sender": 1}), "kwargs are not an object"),
    "a time that is not a number": (envelope(time="now"), "time is not a number"),
    "a missing field": (envelope(kwargs=...), "no 'kwargs' field"),
    "another format": (envelope(v=2), "event format 2 is not 1"),
    "deep nesting": (b'{"v":1,"kwargs":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deeper than 64"),
    "a huge payload": (envelope(kwargs={"blob": "x" * (1 << 20)}), "more than max_payload"),
    "not JSON": (b"\x80\x04\x95pickle", "not valid JSON"),
    "a malformed signature line": (b"hmac-sha256:0\n{}", "signature line is malformed"),
}


@pytest.mark.parametrize(("payload", "reason"), CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_entry_is_dead_lettered_unread(
    payload: bytes,
    reason: str,
    calls: list[dict[str, Any]],
    no_imports: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """The worker acknowledges it, sets it aside with why, imports nothing, calls nobody."""
    remote = make_remote()
    modules = set(sys.modules)
    with no_imports():
        dead = run_one(remote, payload)
    assert set(sys.modules) == modules
    assert calls == []
    [letter] = dead.list()
    assert reason in letter.error
    assert letter.error.startswith(("unreadable event: ", "forged event: "))
    assert memory(remote).pending(STREAM, "tocsin").count == 0


def test_a_well_formed_entry_is_run(calls: list[dict[str, Any]]) -> None:
    """What the crafted entries above change is all that makes them unreadable."""
    assert not run_one(make_remote(), envelope()).list()
    assert calls == [{"order_id": 7}]


def test_an_oversized_event_is_refused_at_the_send() -> None:
    """The publisher refuses what workers would refuse, before publishing it."""
    remote = make_remote(max_payload=100)
    with pytest.raises(SerializationError, match="more than max_payload"):
        paid.send(sender=None, note="x" * 100)
    assert memory(remote).length(STREAM) == 0
    remote.disconnect()


# -- signing ------------------------------------------------------------------------


def test_signed_events_are_read_and_unsigned_ones_refused(calls: list[dict[str, Any]]) -> None:
    """A signing remote signs what it publishes and runs it; what lacks a signature is forged."""
    remote = make_remote(signing_key=KEY)
    try:
        [(_, event)] = [r for r in paid.send(sender=None, order_id=1) if r[1] is not None]
    finally:
        remote.disconnect()
    [message] = memory(remote).read(STREAM)
    assert message.payload.startswith(b"hmac-sha256:")
    assert remote.decode(message.payload) == event
    dead = run_one(remote, envelope())
    assert calls == [{"order_id": 1}] * 2  # at the send, then by the worker; not the forgery
    [letter] = dead.list()
    assert letter.error == (
        "forged event: it is not signed, and this remote accepts signed events only."
    )


def test_a_forged_payload_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The serializer never sees a payload whose signature does not match."""
    signer, checker = (
        make_remote(signing_key=b"someone else's key, not ours!!"),
        make_remote(signing_key=KEY),
    )
    _, payload = signer.encode("orders.paid", None, None, {"order_id": 3})

    def loads(data: bytes) -> dict[str, Any]:
        raise AssertionError("a forged payload was parsed")

    monkeypatch.setattr(checker.serializer, "loads", loads)
    with pytest.raises(ForgedEventError, match="matches none of this remote's signing keys"):
        checker.decode(payload)
    tampered = payload.replace(b'"order_id":3', b'"order_id":4')
    with pytest.raises(ForgedEventError):
        make_remote(signing_key=b"someone else's key, not ours!!").decode(tampered)


def test_keys_rotate() -> None:
    """Events are signed with the first key and accepted with any."""
    old, both, new = (
        make_remote(signing_key=OLD_KEY),
        make_remote(signing_key=[KEY, OLD_KEY]),
        make_remote(signing_key=KEY),
    )
    _, from_old = old.encode("orders.paid", None, None, {})
    _, from_both = both.encode("orders.paid", None, None, {})
    assert both.decode(from_old).signal == "orders.paid"
    assert new.decode(from_both).signal == "orders.paid"
    with pytest.raises(ForgedEventError):
        new.decode(from_old)


def test_a_remote_without_keys_reads_signed_events() -> None:
    """Publishers can start signing before the workers check."""
    _, payload = make_remote(signing_key=KEY).encode("orders.paid", None, None, {"n": 1})
    assert make_remote().decode(payload).kwargs == {"n": 1}


@pytest.mark.parametrize(
    ("key", "error", "match"),
    [
        ([], ValueError, "non-empty"),
        (b"short", ValueError, "16 bytes or more"),
        (["text key of twenty chars"], TypeError, "must be bytes"),
    ],
)
def test_signing_keys_are_checked(key: Any, error: type[Exception], match: str) -> None:
    """Bad keys are refused when the remote is made."""
    with pytest.raises(error, match=match):
        Remote(MemoryTransport(), signing_key=key)


# -- anything at all ------------------------------------------------------------------

DANGEROUS = ["os:system", "builtins:eval", "subprocess:Popen", "evil_module_xyz:run", "os.system"]
TAGS = ["$ref", "$enum", "$tuple", "$set", "$dict", "$items", "$bytes", "$datetime", "$decimal"]
FIELDS = ["v", "id", "signal", "receiver", "time", "sender", "kwargs", "context"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(DANGEROUS)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(TAGS + FIELDS) | st.text(max_size=6), children, max_size=3
        )
    ),
    max_leaves=16,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "v": st.just(1) | json_values,
        "id": st.text(max_size=8) | json_values,
        "signal": st.sampled_from(DANGEROUS) | json_values,
        "receiver": st.sampled_from(DANGEROUS) | json_values,
        "time": st.integers() | json_values,
        "sender": json_values,
        "kwargs": st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values,
        "context": json_values,
    },
)
payloads = (
    st.binary(max_size=64)
    | json_values.map(lambda value: json.dumps(value).encode())
    | envelopes.map(lambda value: json.dumps(value).encode())
    | st.builds(
        lambda sig, body: b"hmac-sha256:" + sig + b"\n" + body,
        st.binary(max_size=70),
        st.binary(max_size=30),
    )
)
fields = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads, headers=fields, deliveries=st.integers(0, 10), signing=st.booleans())
def test_any_entry_ends_in_the_dead_letters_unread(
    payload: bytes,
    headers: dict[str, str],
    deliveries: int,
    signing: bool,
    calls: list[dict[str, Any]],
    no_imports: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """Whatever a stream writer appends, the worker neither raises nor imports: it
    acknowledges the entry and dead-letters it as unreadable (or forged)."""
    remote = make_remote(signing_key=KEY if signing else None)
    worker = Worker(remote, block=0.01)
    modules = set(sys.modules)
    try:
        with no_imports():
            verdict = worker._handle(Message("1-0", payload, deliveries, headers))
            letters = run_one(remote, payload).list()
    finally:
        remote.disconnect()
    assert isinstance(verdict, str)
    assert verdict.startswith(
        "forged event: " if signing else ("unreadable event: ", "forged event: ")
    )
    assert set(sys.modules) == modules
    assert calls == []
    [letter] = letters
    assert letter.error == verdict
    assert memory(remote).pending(STREAM, "tocsin").count == 0
