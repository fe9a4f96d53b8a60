"""Tests of ``tocsin.testing``: ``capture``, ``muted`` and ``connected_to``.

Every helper must put the signal back exactly as it found it (same rows, in
the same order, weak or strong, with their senders and options, and plans that
are rebuilt rather than stale), also when the block raises or blocks end out of
order. Local helpers must change the current thread or asyncio task only, and
leave no attribute on the signal once they end.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

import pytest

from _named_receivers import NamedReceivers, responses
from _named_receivers import NamedReceivers as Log
from tocsin import Signal, tracing
from tocsin.contrib.sqlalchemy import _base as sqlalchemy_base
from tocsin.oncommit import Deferred
from tocsin.testing import (
    ANY,
    Capture,
    FakeTransaction,
    SentCall,
    _Snapshot,
    capture,
    connected_to,
    muted,
)
from tocsin.testing import _rows as rows_of

# -- helpers ------------------------------------------------------------------------------


class Sender:
    """A weakly referenceable object to send from."""

    def __repr__(self) -> str:
        return "<Sender>"


class Listener:
    """An object whose bound method is connected (weakly, through WeakMethod)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def method(self, **kwargs: Any) -> str:
        self.log.append("method")
        return "method"


@pytest.fixture
def log() -> Log:
    return NamedReceivers(__name__)


def without_captures(result: list[tuple[Any, Any]]) -> list[Any]:
    return [response for receiver, response in result if "capture" not in repr(receiver)]


@pytest.fixture
def sender() -> Sender:
    return Sender()


@pytest.fixture
def busy(log: Log, sender: Sender) -> Signal:
    """A signal with every kind of connection: weak and strong, any sender and one
    sender, a bound method, a dispatch_uid, a priority and an on-commit receiver."""
    signal = Signal(use_caching=True)
    listener = Listener(log.names)
    log.receivers["listener"] = listener.method
    signal.connect(log.sync("weak"))
    signal.connect(log.sync("strong"), weak=False)
    signal.connect(log.sync("for sender"), sender=sender)
    signal.connect(listener.method)
    signal.connect(log.sync("uid"), dispatch_uid="the-uid", weak=False)
    signal.connect(log.sync("urgent"), priority=5)
    signal.connect(log.sync("after commit"), on_commit=True)
    return signal


ALL = ["urgent", "weak", "strong", "for sender", "method", "uid", "after commit"]


def assert_unchanged(signal: Signal, before: _Snapshot) -> None:
    assert before.changes() == []
    assert not set(vars(signal)) & {"send", "send_robust", "asend", "asend_robust", "_receivers_of"}


def in_thread(call: Callable[[], Any]) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join()
    return result[0]


def raise_inside(block: AbstractContextManager[Any], action: Callable[[], object]) -> None:
    with block:
        action()
        raise KeyError("boom")


# -- capture ----------------------------------------------------------------------------


def test_capture_records_sender_and_keyword_arguments(sender: Sender) -> None:
    """Each send is recorded as SentCall(sender, kwargs), without the signal."""
    signal = Signal()
    with capture(signal) as sent:
        signal.send(sender, size=3)
        signal.send(None)
    assert sent.calls == [SentCall(sender, {"size": 3}), SentCall(None, {})]
    assert sent.calls[0] == (sender, {"size": 3})
    assert sent.call_count == 2
    assert repr(sent.calls[0]) == "send(sender=<Sender>, size=3)"


def test_capture_with_a_sender_records_only_that_sender(sender: Sender) -> None:
    """capture(signal, sender=...) filters as connect(sender=...) does."""
    signal = Signal()
    with capture(signal, sender=sender) as sent:
        signal.send(sender, n=1)
        signal.send(Sender(), n=2)
        signal.send(None, n=3)
    assert sent.calls == [SentCall(sender, {"n": 1})]


def test_capture_records_every_way_of_sending(log: Log) -> None:
    """send, send_robust, asend and asend_robust are all recorded."""
    signal = Signal()
    signal.connect(log.async_("async"))
    with capture(signal) as sent:
        signal.send_robust(None, way="send_robust")
        asyncio.run(signal.asend(None, way="asend"))
        asyncio.run(signal.asend_robust(None, way="asend_robust"))
        signal.send(None, way="send")
    assert [call.kwargs["way"] for call in sent.calls] == [
        "send_robust",
        "asend",
        "asend_robust",
        "send",
    ]


def test_capture_leaves_the_registry_exactly_as_it_was(busy: Signal, sender: Sender) -> None:
    """After the block: the same rows, options included, and plans rebuilt."""
    busy.send(sender)  # builds and caches the plans
    before = _Snapshot([busy])
    with capture(busy):
        busy.send(sender)
    assert_unchanged(busy, before)


def test_capture_is_called_first_and_appears_in_the_responses(log: Log) -> None:
    """The capture's receiver comes first, so the signal's own follow in their order."""
    signal = Signal()
    signal.connect(log.sync("a"), priority=10)
    signal.connect(log.sync("b"))
    with capture(signal) as sent:
        result = signal.send(None)
    assert result[0] == (sent.receiver, None)
    assert responses(result[1:]) == ["a", "b"]


def test_capture_records_a_send_whose_receiver_raises() -> None:
    """As a Mock records a call whose side effect raises."""
    signal = Signal()

    def fail(**kwargs: Any) -> None:
        raise ValueError("receiver failed")

    signal.connect(fail)
    with capture(signal) as sent, pytest.raises(ValueError, match="receiver failed"):
        signal.send(None, n=1)
    sent.assert_sent_once_with(None, n=1)


def test_capture_makes_has_listeners_true() -> None:
    """Code that sends only when someone listens does send while a capture listens."""
    signal = Signal()
    assert not signal.has_listeners()
    with capture(signal):
        assert signal.has_listeners()
    assert not signal.has_listeners()


def test_capture_records_the_sqlalchemy_integrations_sends() -> None:
    """Model signals are sent from the plan, not through send(): still recorded."""
    signal = Signal()
    with capture(signal) as sent:
        sqlalchemy_base.send(signal, "Todo", created=True)
    sent.assert_sent_once_with("Todo", created=True)


def test_a_global_capture_records_other_threads_sends() -> None:
    signal = Signal()
    with capture(signal) as sent:
        in_thread(lambda: signal.send("thread"))
    assert sent.calls == [SentCall("thread", {})]


def test_a_local_capture_records_only_its_contexts_sends(log: Log) -> None:
    """local=True: other threads neither are recorded nor see the capture."""
    signal = Signal()
    signal.connect(log.sync("a"))
    with capture(signal, local=True) as sent:
        assert responses(in_thread(lambda: signal.send("thread"))) == ["a"]
        result = signal.send("here")
    assert result == [(sent.receiver, None), (log.receivers["a"], "a")]
    assert sent.calls == [SentCall("here", {})]
    assert_unchanged(signal, _Snapshot([signal]))


def test_a_local_capture_with_a_sender() -> None:
    signal = Signal()
    mine = Sender()
    with capture(signal, mine, local=True) as sent:
        signal.send(mine)
        signal.send("other")
        assert signal.has_listeners(mine)
        assert not signal.has_listeners()
    assert sent.calls == [SentCall(mine, {})]


def test_calls_stay_readable_after_the_block_and_start_again_appends() -> None:
    signal = Signal()
    sent = Capture(signal)
    assert not sent.active
    signal.send("before")
    assert sent.start().active
    signal.send("first")
    sent.stop()
    sent.stop()  # idempotent
    signal.send("between")
    with sent:
        signal.send("second")
    assert [call.sender for call in sent.calls] == ["first", "second"]
    sent.clear()
    assert sent.calls == []
    assert sent.call_count == 0


def test_starting_a_capture_twice_is_an_error() -> None:
    sent = capture(Signal())
    with sent, pytest.raises(RuntimeError, match="already recording"):
        sent.start()


def test_a_capture_ends_when_the_block_raises() -> None:
    signal = Signal()
    before = _Snapshot([signal])
    sent = capture(signal)
    with pytest.raises(KeyError):
        raise_inside(sent, lambda: signal.send(None))
    assert not sent.active
    assert_unchanged(signal, before)
    signal.send(None)
    assert sent.call_count == 1


def test_nested_captures_each_record() -> None:
    signal = Signal()
    with capture(signal) as outer:
        signal.send(1)
        with capture(signal) as inner, capture(signal, local=True) as local:
            signal.send(2)
        signal.send(3)
    assert [c.sender for c in outer.calls] == [1, 2, 3]
    assert [c.sender for c in inner.calls] == [2]
    assert [c.sender for c in local.calls] == [2]


@pytest.mark.parametrize(
    "value",
    ["post_save", None, [Signal()], mock.Mock()],
    ids=["str", "None", "list", "mock"],
)
def test_capture_takes_a_signal(value: Any) -> None:
    with pytest.raises(TypeError, match=r"capture\(\) takes a tocsin Signal"):
        capture(value)


def test_capture_checks_local() -> None:
    with pytest.raises(TypeError, match="local must be True or False"):
        capture(Signal(), local=1)  # type: ignore[arg-type]


# -- assertions -------------------------------------------------------------------------

sent_signal = Signal()  # a module attribute, so that messages can name it
NAME = f"{__name__}.sent_signal"


@pytest.fixture
def sent(sender: Sender) -> Iterator[Capture]:
    with capture(sent_signal) as recorded:
        sent_signal.send(sender, instance=1, created=True)
        sent_signal.send(sender, instance=2, created=False)
        yield recorded


def test_assert_sent_matches_a_subset_of_some_call(sent: Capture, sender: Sender) -> None:
    sent.assert_sent()
    sent.assert_sent(sender)
    sent.assert_sent(sender=sender, created=False)
    sent.assert_sent(instance=1)
    sent.assert_sent(instance=ANY, created=True)
    sent.assert_sent(ANY, instance=2, created=ANY)


def test_assert_sent_lists_what_was_sent(sent: Capture) -> None:
    with pytest.raises(AssertionError) as raised:
        sent.assert_sent(instance=3)
    assert str(raised.value) == (
        f"Expected {NAME} to have been sent with at least send(sender=<ANY>, instance=3).\n"
        "It was sent 2 times:\n"
        "  send(sender=<Sender>, instance=1, created=True)\n"
        "  send(sender=<Sender>, instance=2, created=False)"
    )


def test_assert_sent_when_nothing_was_sent() -> None:
    with capture(sent_signal, sender="a sender") as recorded:
        pass
    with pytest.raises(AssertionError, match=r"It was never sent by 'a sender'\.$"):
        recorded.assert_sent()


def test_assert_sent_once(sent: Capture) -> None:
    with pytest.raises(AssertionError, match=r"to have been sent once\.\nIt was sent 2 times:"):
        sent.assert_sent_once()
    sent.clear()
    sent_signal.send(None)
    sent.assert_sent_once()


def test_assert_sent_once_with_needs_exactly_the_arguments(sender: Sender) -> None:
    with capture(sent_signal) as recorded:
        sent_signal.send(sender, instance=1, created=True)
    recorded.assert_sent_once_with(sender, instance=1, created=True)
    recorded.assert_sent_once_with(instance=ANY, created=True)
    with pytest.raises(AssertionError) as raised:
        recorded.assert_sent_once_with(sender, instance=1)
    assert str(raised.value) == (
        f"Expected {NAME} to have been sent once with send(sender=<Sender>, instance=1).\n"
        "It was sent once:\n"
        "  send(sender=<Sender>, instance=1, created=True)\n"
        "Differences:\n"
        "  created: sent True, not expected"
    )
    with pytest.raises(AssertionError) as raised:
        recorded.assert_sent_once_with("other", instance=2, created=True, extra=None)
    assert str(raised.value).endswith(
        "Differences:\n"
        "  sender: expected 'other', sent <Sender>\n"
        "  instance: expected 2, sent 1\n"
        "  extra: expected None, not sent"
    )


def test_assert_sent_once_with_fails_on_two_calls(sent: Capture, sender: Sender) -> None:
    with pytest.raises(AssertionError, match="It was sent 2 times") as raised:
        sent.assert_sent_once_with(sender, instance=1, created=True)
    assert "Differences" not in str(raised.value)


def test_assert_sent_with_checks_the_last_call(sent: Capture, sender: Sender) -> None:
    sent.assert_sent_with(sender, instance=2, created=False)
    with pytest.raises(AssertionError, match="Expected the last send of") as raised:
        sent.assert_sent_with(sender, instance=1, created=True)
    assert "  instance: expected 1, sent 2\n  created: expected True, sent False" in str(
        raised.value
    )
    sent.clear()
    with pytest.raises(AssertionError, match=r"It was never sent\.$"):
        sent.assert_sent_with()


def test_assert_not_sent_and_assert_sent_times(sent: Capture) -> None:
    sent.assert_sent_times(2)
    with pytest.raises(AssertionError, match=r"not to have been sent\.\nIt was sent 2 times:"):
        sent.assert_not_sent()
    with pytest.raises(AssertionError, match=r"to have been sent once\.\nIt was sent 2 times"):
        sent.assert_sent_times(1)
    with pytest.raises(AssertionError, match=r"to have been sent 3 times\."):
        sent.assert_sent_times(3)
    sent.clear()
    sent.assert_not_sent()
    sent.assert_sent_times(0)


def test_assertion_arguments_are_checked(sent: Capture) -> None:
    with pytest.raises(TypeError, match="leave signal= out"):
        sent.assert_sent(signal=sent_signal)
    with pytest.raises(TypeError, match="count >= 0"):
        sent.assert_sent_times(-1)
    with pytest.raises(TypeError, match="count >= 0"):
        sent.assert_sent_times("2")  # type: ignore[arg-type]


def test_capture_repr(sent: Capture) -> None:
    assert repr(sent) == f"<Capture of {NAME}: 2 times, recording>"


# -- muted, global -----------------------------------------------------------------------


def test_muted_calls_no_receiver(busy: Signal, log: Log, sender: Sender) -> None:
    """Every way of sending returns [] and has_listeners() is False."""
    with muted(busy):
        assert busy.send(sender) == []
        assert busy.send_robust(sender) == []
        assert asyncio.run(busy.asend(sender)) == []
        assert asyncio.run(busy.asend_robust(sender)) == []
        assert not busy.has_listeners()
        assert not busy.has_listeners(sender)
    assert log.names == []


def test_muted_restores_the_exact_registry(busy: Signal, log: Log, sender: Sender) -> None:
    """Order, weak/strong, senders, dispatch_uid, priority and on_commit all come back."""
    assert responses(busy.send(sender)) == ALL
    before = _Snapshot([busy])
    kinds = [(row.weak, row.priority, row.on_commit) for row in rows_of(busy)]
    with muted(busy):
        pass
    assert_unchanged(busy, before)
    assert [(row.weak, row.priority, row.on_commit) for row in rows_of(busy)] == kinds
    assert responses(busy.send(sender)) == ALL
    assert "for sender" not in responses(busy.send(None))


def test_muted_leaves_no_stale_plan(log: Log, sender: Sender) -> None:
    """factory_boy's mute_signals kept a stale cache (its PR #213): here every plan
    is rebuilt, whichever sender was sent from before, during and after."""
    signal = Signal(use_caching=True)
    signal.connect(log.sync("any"))
    signal.connect(log.sync("mine"), sender=sender)
    assert responses(signal.send(sender)) == ["any", "mine"]
    assert responses(signal.send(None)) == ["any"]
    with muted(signal):
        assert signal.send(sender) == []
        assert signal.send(None) == []
    assert responses(signal.send(sender)) == ["any", "mine"]
    assert responses(signal.send(None)) == ["any"]


def test_receivers_connected_inside_a_mute_are_called_and_kept(log: Log) -> None:
    """factory_boy lost them (its PR #799): here they come after the restored ones."""
    signal = Signal()
    signal.connect(log.sync("before"))
    with muted(signal):
        signal.connect(log.sync("during"))
        assert responses(signal.send(None)) == ["during"]
    assert responses(signal.send(None)) == ["before", "during"]


def test_a_receiver_reconnected_inside_a_mute_gets_its_original_row_back(log: Log) -> None:
    """Connected weakly before, strongly inside: weak again after, at its place."""
    signal = Signal()
    signal.connect(log.sync("a"))
    signal.connect(log.sync("b"))
    with muted(signal):
        signal.connect(log.receivers["a"], weak=False)
    assert [row.weak for row in rows_of(signal)] == [True, True]
    assert responses(signal.send(None)) == ["a", "b"]


def test_a_receiver_set_aside_cannot_be_disconnected_inside_the_mute(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    with muted(signal):
        assert not signal.disconnect(log.receivers["a"])
    assert responses(signal.send(None)) == ["a"]


def test_a_weak_receiver_that_dies_during_a_mute_is_not_restored() -> None:
    signal = Signal()

    def short_lived(**kwargs: Any) -> None:
        pass

    signal.connect(short_lived)
    with muted(signal):
        del short_lived
        gc.collect()
    assert signal.receivers == []


def test_muted_takes_several_signals_and_restores_them_on_error(log: Log) -> None:
    first, second = Signal(), Signal()
    first.connect(log.sync("first"))
    second.connect(log.sync("second"))
    before = _Snapshot([first, second])
    with pytest.raises(KeyError):
        raise_inside(
            muted(first, second, first),
            lambda: log.names.extend(
                [*responses(first.send(None)), *responses(second.send(None)), "inside"]
            ),
        )
    assert before.changes() == []
    assert log.names == ["inside"]
    assert responses(first.send(None)) == ["first"]


def test_nested_mutes_of_one_signal(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("outer"))
    with muted(signal):
        signal.connect(log.sync("middle"))
        with muted(signal):
            assert signal.send(None) == []
        assert responses(signal.send(None)) == ["middle"]
    assert responses(signal.send(None)) == ["outer", "middle"]


def test_muted_and_connected_to_are_decorators(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    spy = mock.Mock(return_value="spy")

    @muted(signal)
    @connected_to(spy, signal, weak=False)
    def send() -> list[Any]:
        return responses(signal.send(None))

    assert send() == send() == ["spy"]
    assert responses(signal.send(None)) == ["a"]


def test_a_global_mute_is_seen_by_other_threads(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    with muted(signal):
        assert in_thread(lambda: signal.send(None)) == []


def test_a_capture_inside_a_mute_records_without_calling_the_receivers(log: Log) -> None:
    """The common need: assert a signal was sent, without running its receivers."""
    signal = Signal()
    signal.connect(log.sync("expensive"))
    with muted(signal), capture(signal) as sent:
        signal.send("x", n=1)
    sent.assert_sent_once_with("x", n=1)
    assert log.names == []
    assert responses(signal.send(None)) == ["expensive"]


def test_a_capture_started_before_a_mute_and_stopped_inside_it_is_not_restored() -> None:
    """Blocks ending out of order (a capture's stop() while a later mute is active)
    still leave the registry as it was before both."""
    signal = Signal()
    before = _Snapshot([signal])
    sent = capture(signal).start()
    connection = connected_to(lambda **kwargs: None, signal)
    connection.__enter__()
    mute = muted(signal)
    mute.__enter__()
    sent.stop()
    connection.__exit__(None, None, None)
    mute.__exit__(None, None, None)
    assert before.changes() == []
    assert signal.receivers == []


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ((), r"muted\(\) needs at least one signal"),
        (([Signal()],), r"Pass each signal as its own argument"),
        (("post_save",), r"muted\(\) takes a tocsin Signal; got str 'post_save'"),
    ],
    ids=["nothing", "a list", "a string"],
)
def test_muted_checks_its_arguments(signals: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message), muted(*signals):
        pass


def test_muted_checks_local() -> None:
    local: Any = None
    with (
        pytest.raises(TypeError, match="local must be True or False"),
        muted(Signal(), local=local),
    ):
        pass


def test_muted_rejects_a_django_signal() -> None:
    django_dispatch = pytest.importorskip("django.dispatch")
    with (
        pytest.raises(TypeError, match=r"put 'tocsin\.contrib\.django' first in INSTALLED_APPS"),
        muted(django_dispatch.Signal()),
    ):
        pass


# -- muted, local ------------------------------------------------------------------------


def test_a_local_mute_mutes_this_thread_only(busy: Signal, log: Log, sender: Sender) -> None:
    busy.send(sender)
    log.names.clear()
    version = busy._version
    with muted(busy, local=True):
        assert busy.send(sender) == []
        assert busy.send_robust(sender) == []
        assert asyncio.run(busy.asend(sender)) == []
        assert asyncio.run(busy.asend_robust(sender)) == []
        assert not busy.has_listeners(sender)
        assert busy._live_receivers(sender) == ([], [])
        assert log.names == []
        assert responses(in_thread(lambda: busy.send(sender))) == ALL
        assert in_thread(busy.has_listeners)
    # Nothing was disconnected: no plan was even dropped.
    assert busy._version == version
    assert responses(busy.send(sender)) == ALL


def test_a_local_mute_mutes_the_sqlalchemy_integrations_sends(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("model"))
    with muted(signal, local=True):
        sqlalchemy_base.send(signal, "Todo", created=True)
    assert log.names == []
    sqlalchemy_base.send(signal, "Todo", created=True)
    assert log.names == ["model"]


def test_a_local_mute_in_one_task_does_not_mute_a_concurrent_task(log: Log) -> None:
    """A task and the tasks it starts are muted; a task running beside it is not."""
    signal = Signal()
    signal.connect(log.sync("r"))
    got: dict[str, list[Any]] = {}

    async def main() -> None:
        muting = asyncio.Event()
        other_sent = asyncio.Event()

        async def muted_task() -> None:
            with muted(signal, local=True):
                muting.set()
                await other_sent.wait()
                got["muted task"] = signal.send("muted task")
                got["its child"] = await asyncio.create_task(signal.asend("child"))
            got["muted task, after"] = signal.send("after")

        async def other_task() -> None:
            await muting.wait()
            got["other task"] = await signal.asend("other")
            other_sent.set()

        await asyncio.gather(muted_task(), other_task())

    asyncio.run(main())
    assert got == {
        "muted task": [],
        "its child": [],
        "other task": [(log.receivers["r"], "r")],
        "muted task, after": [(log.receivers["r"], "r")],
    }


def test_a_task_outliving_a_local_mute_is_no_longer_muted(log: Log) -> None:
    """It holds a copy of the context, but the mute ended with its block."""
    signal = Signal()
    signal.connect(log.sync("r"))

    async def main() -> list[tuple[Any, Any]]:
        go = asyncio.Event()

        async def later() -> list[tuple[Any, Any]]:
            await go.wait()
            return signal.send(None)

        with muted(signal, local=True):
            task = asyncio.create_task(later())
            await asyncio.sleep(0)
        go.set()
        return await task

    assert responses(asyncio.run(main())) == ["r"]
    assert "send" not in vars(signal)


def test_a_local_mute_lets_receivers_connected_later_through(log: Log) -> None:
    """Receivers connected after the block started (globally or locally) are called."""
    signal = Signal()
    signal.connect(log.sync("before"))
    with muted(signal, local=True):
        with connected_to(log.sync("global"), signal), capture(signal) as sent:
            with connected_to(log.sync("local"), signal, local=True):
                assert without_captures(signal.send(None)) == ["global", "local"]
        assert signal.send(None) == []
    sent.assert_sent_once()


def test_a_local_mute_also_mutes_earlier_local_receivers(log: Log) -> None:
    signal = Signal()
    with connected_to(log.sync("local"), signal, local=True):
        with muted(signal, local=True):
            assert signal.send(None) == []
        assert responses(signal.send(None)) == ["local"]


def test_a_local_mute_ending_in_another_context_leaves_nothing_behind(log: Log) -> None:
    """A fixture's teardown may run in another context than its setup."""
    signal = Signal()
    signal.connect(log.sync("r"))
    block = muted(signal, local=True)
    block.__enter__()
    assert signal.send(None) == []
    contextvars.copy_context().run(block.__exit__, None, None, None)
    assert responses(signal.send(None)) == ["r"]
    assert "send" not in vars(signal)
    assert "_receivers_of" not in vars(signal)


def test_local_blocks_ending_out_of_order(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("r"))
    before = _Snapshot([signal])
    first = muted(signal, local=True)
    second = connected_to(log.sync("local"), signal, local=True)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert responses(signal.send(None)) == ["r", "local"]
    second.__exit__(None, None, None)
    assert responses(signal.send(None)) == ["r"]
    assert_unchanged(signal, before)


def test_local_helpers_restore_a_send_attribute_set_on_the_instance(log: Log) -> None:
    """mock.patch.object(signal, "send") first, then a local mute: the patch survives."""
    signal = Signal()
    with mock.patch.object(signal, "send", return_value="patched"):
        with muted(signal, local=True):
            pass
        assert signal.send(None) == "patched"  # type: ignore[comparison-overlap]
    assert "send" not in vars(signal)


# -- connected_to ------------------------------------------------------------------------


def test_connected_to_connects_for_the_block(busy: Signal, sender: Sender) -> None:
    before = _Snapshot([busy])
    spy = mock.Mock(return_value="spy")
    with connected_to(spy, busy) as connected:
        assert connected is spy
        assert responses(busy.send(sender))[-2:] == ["spy", "after commit"]
    spy.assert_called_once_with(signal=busy, sender=sender)
    assert_unchanged(busy, before)


def test_connected_to_passes_connects_options(log: Log, sender: Sender) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    with connected_to(log.sync("first"), signal, sender, weak=False, priority=9):
        assert responses(signal.send(sender)) == ["first", "a"]
        assert responses(signal.send(None)) == ["a"]
        (row,) = [r for r in rows_of(signal) if not r.weak]
        assert row.priority == 9
    with connected_to(log.sync("uid"), signal, dispatch_uid="uid"):
        assert responses(signal.send(None)) == ["a", "uid"]
    assert responses(signal.send(None)) == ["a"]


def test_connected_to_an_on_commit_receiver(log: Log) -> None:
    signal = Signal()
    with FakeTransaction(), connected_to(log.sync("later"), signal, on_commit=True):
        (response,) = responses(signal.send(None))
        assert isinstance(response, Deferred)
    assert log.names == ["later"]  # committed after the block disconnected it


def test_connected_to_leaves_an_existing_connection_alone(log: Log) -> None:
    """Connected weakly before: still weak, and still connected, after."""
    signal = Signal()
    signal.connect(log.sync("a"))
    before = _Snapshot([signal])
    with connected_to(log.receivers["a"], signal, weak=False, priority=3):
        assert responses(signal.send(None)) == ["a"]
        assert before.changes() == []
    assert_unchanged(signal, before)


def test_connected_to_refuses_a_dispatch_uid_taken_by_another_receiver(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"), dispatch_uid="uid")
    before = _Snapshot([signal])
    with pytest.raises(ValueError, match="dispatch_uid 'uid' is already connected to"):
        with connected_to(log.sync("b"), signal, dispatch_uid="uid"):
            pass
    assert before.changes() == []


def test_connected_to_disconnects_when_the_block_raises(log: Log) -> None:
    signal = Signal()
    with pytest.raises(ZeroDivisionError), connected_to(log.sync("a"), signal):
        _ = 1 / 0
    assert signal.receivers == []


def test_nested_connected_to_of_one_receiver(log: Log) -> None:
    signal = Signal()
    receiver = log.sync("a")
    with connected_to(receiver, signal):
        with connected_to(receiver, signal):
            pass
        assert responses(signal.send(None)) == ["a"]
    assert signal.receivers == []


def test_a_connected_to_lambda_stays_connected_for_the_block() -> None:
    signal = Signal()
    with connected_to(lambda **kwargs: "lambda", signal):
        gc.collect()
        assert responses(signal.send(None)) == ["lambda"]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((Signal(), lambda **kw: None), TypeError, "the receiver first"),
        ((lambda **kw: None, "post_save"), TypeError, "takes a tocsin Signal"),
        ((lambda **kw: None, print), TypeError, "The receiver comes first"),
        (("not callable", Signal()), TypeError, "must be callable"),
        ((lambda: None, Signal()), ValueError, r"must accept keyword arguments \(\*\*kwargs\)"),
    ],
    ids=["swapped", "not a signal", "two callables", "not callable", "no kwargs"],
)
def test_connected_to_checks_its_arguments(
    arguments: tuple[Any, Any], error: type[Exception], message: str
) -> None:
    for local in (False, True):
        with pytest.raises(error, match=message), connected_to(*arguments, local=local):
            pass


def test_local_connected_to_refuses_registry_options() -> None:
    options: list[dict[str, Any]] = [{"priority": 1}, {"dispatch_uid": "uid"}]
    for option in options:
        with pytest.raises(TypeError, match="do not apply"):
            with connected_to(lambda **kw: None, Signal(), local=True, **option):
                pass
    with pytest.raises(TypeError, match="robust= applies only"):
        with connected_to(lambda **kw: None, Signal(), local=True, robust=True):
            pass


def test_a_local_receiver_gets_this_threads_sends_only(busy: Signal, sender: Sender) -> None:
    before = _Snapshot([busy])
    rows = list(busy.receivers)
    spy = mock.Mock(return_value="spy")
    with connected_to(spy, busy, local=True):
        assert responses(busy.send(sender)) == [*ALL[:-1], "spy", "after commit"]
        assert "spy" not in responses(in_thread(lambda: busy.send(sender)))
        assert busy.receivers == rows
    spy.assert_called_once_with(signal=busy, sender=sender)
    assert_unchanged(busy, before)


def test_a_local_receiver_with_a_sender(log: Log, sender: Sender) -> None:
    signal = Signal()
    with connected_to(log.sync("mine"), signal, sender, local=True):
        assert responses(signal.send(sender)) == ["mine"]
        assert signal.send(Sender()) == []
        assert signal.has_listeners(sender)
        assert not signal.has_listeners()


def test_a_local_async_receiver(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("sync"))
    with connected_to(log.async_("local async"), signal, local=True):
        assert responses(asyncio.run(signal.asend(None))) == ["sync", "local async"]
        assert responses(signal.send(None)) == ["sync", "local async"]


def test_a_local_on_commit_receiver(log: Log) -> None:
    signal = Signal()
    with FakeTransaction(), connected_to(log.sync("later"), signal, local=True, on_commit=True):
        (response,) = responses(signal.send(None))
        assert isinstance(response, Deferred)
    assert log.names == ["later"]  # committed after the block disconnected it


def test_a_local_receiver_inside_a_global_mute(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("muted"))
    with muted(signal), connected_to(log.sync("local"), signal, local=True):
        assert responses(signal.send(None)) == ["local"]


# -- tracing --------------------------------------------------------------------------------


@pytest.fixture
def traced() -> Iterator[list[tracing.SendEvent]]:
    events: list[tracing.SendEvent] = []
    stop = tracing.subscribe(events.append)
    yield events
    stop()


def traced_receivers(event: tracing.SendEvent) -> list[Any]:
    return [call.receiver for call in event.calls]


def test_tracing_sees_sends_under_local_overlays(traced: list[tracing.SendEvent], log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    local = log.sync("local")
    with muted(signal, local=True):
        assert signal.send(None) == []
        with connected_to(local, signal, local=True):
            assert responses(signal.send_robust(None)) == ["local"]
            assert responses(asyncio.run(signal.asend(None))) == ["local"]
    assert [event.method for event in traced] == ["send", "send_robust", "asend"]
    assert [traced_receivers(event) for event in traced] == [[], [local], [local]]


def test_tracing_turned_on_and_off_inside_a_local_overlay(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    events: list[tracing.SendEvent] = []
    with connected_to(log.sync("local"), signal, local=True):
        stop = tracing.subscribe(events.append)
        assert responses(signal.send(None)) == ["a", "local"]
        stop()
        assert responses(signal.send(None)) == ["a", "local"]
    assert [traced_receivers(event) for event in events] == [
        [log.receivers["a"], log.receivers["local"]]
    ]
    assert responses(signal.send(None)) == ["a"]
    assert "send" not in vars(signal)


def test_tracing_sees_a_global_capture_as_a_receiver(traced: list[tracing.SendEvent]) -> None:
    """Documented: a global capture is a connection like any other."""
    signal = Signal()
    with capture(signal) as sent:
        signal.send(None)
    assert traced_receivers(traced[0]) == [sent.receiver]


# -- snapshots ------------------------------------------------------------------------------


def test_snapshot_reports_what_changed(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    signal.connect(log.sync("b"))
    signal.connect(log.sync("c"))
    before = _Snapshot([signal])
    signal.disconnect(log.receivers["a"])
    signal.connect(log.sync("d"), weak=False)
    signal.disconnect(log.receivers["b"])
    signal.connect(log.receivers["b"], priority=2)
    (change,) = before.changes()
    assert change.startswith("<Signal at 0x")
    assert f"connected {__name__}.d (strong, any sender)" in change
    assert f"disconnected {__name__}.a (weak, any sender)" in change
    assert f"connected differently: {__name__}.b (weak, any sender)" in change


def test_snapshot_reports_a_new_order(log: Log) -> None:
    signal = Signal()
    signal.connect(log.sync("a"))
    signal.connect(log.sync("b"))
    before = _Snapshot([signal])
    signal.receivers = list(reversed(signal.receivers))
    (change,) = before.changes()
    assert change.endswith("the same receivers, in another order")


def test_snapshot_ignores_receivers_that_died_and_signals_made_since() -> None:
    signal = Signal()

    def short_lived(**kwargs: Any) -> None:
        pass

    signal.connect(short_lived)
    before = _Snapshot()
    del short_lived
    gc.collect()
    new = Signal()
    new.connect(lambda **kwargs: None, weak=False)
    assert before.changes() == []
