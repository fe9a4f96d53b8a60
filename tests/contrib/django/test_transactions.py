"""On-commit receivers on django.db.transaction, as transaction.on_commit() runs them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

pytest.importorskip("django", reason="tocsin.contrib.django needs Django")

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.signals import post_save
from django.db.utils import ConnectionDoesNotExist
from django.dispatch import Signal as DjangoSignal
from django.test import TestCase

from tocsin import oncommit
from tocsin.contrib.django import AtomicScope

from .models import Shelf

pytestmark = pytest.mark.usefixtures("tables", "installed_now")


class Calls(list[str]):
    """What the receivers did, in order."""

    def receiver(self, name: str, fail: bool = False) -> Any:
        def receive(sender: object, **kwargs: Any) -> str:
            self.append(name)
            if fail:
                raise RuntimeError(f"{name} failed")
            return name

        receive.__qualname__ = name
        return receive


class Rollback(Exception):
    """Raised to roll an atomic block back."""


def send_and_roll_back(signal: Any, sender: object) -> None:
    with transaction.atomic():
        signal.send(sender=sender)
        raise Rollback


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def order_placed(calls: Calls) -> Any:
    """A Django signal made by an app, with an on-commit receiver and an ordinary one."""
    signal = DjangoSignal()
    signal.connect(calls.receiver("after commit"), on_commit=True, weak=False)
    signal.connect(calls.receiver("during send"), weak=False)
    return signal


def test_outside_a_transaction_the_receiver_runs_at_once(order_placed: Any, calls: Calls) -> None:
    """In autocommit mode, as transaction.on_commit() does, it runs during the send."""
    order_placed.send(sender=None)
    assert calls == ["during send", "after commit"]


def test_inside_atomic_it_waits_for_the_commit_in_order_with_on_commit(
    order_placed: Any, calls: Calls
) -> None:
    """The deferred call is one of Django's on-commit callbacks: it runs after the
    commit, in order with the callbacks registered around it."""
    with transaction.atomic():
        transaction.on_commit(lambda: calls.append("on_commit before"))
        responses = order_placed.send(sender=None)
        transaction.on_commit(lambda: calls.append("on_commit after"))
        assert calls == ["during send"]
        deferred = responses[-1][1]
        assert isinstance(deferred, oncommit.Deferred)
        states = [deferred.state]
    states.append(deferred.state)
    assert calls == ["during send", "on_commit before", "after commit", "on_commit after"]
    assert states == ["pending", "done"]


def test_a_rollback_drops_it(order_placed: Any, calls: Calls) -> None:
    with pytest.raises(Rollback):
        send_and_roll_back(order_placed, None)
    assert calls == ["during send"]


def test_a_rolled_back_savepoint_drops_what_was_sent_inside_it(
    order_placed: Any, calls: Calls
) -> None:
    """As Django does for on_commit(): the outer block's calls still run."""
    with transaction.atomic():
        order_placed.send(sender="outer")
        with pytest.raises(Rollback):
            send_and_roll_back(order_placed, "savepoint")
        calls.append("commit")
    assert calls == ["during send", "during send", "commit", "after commit"]


def test_a_durable_block_runs_it_after_its_commit(order_placed: Any, calls: Calls) -> None:
    with transaction.atomic(durable=True):
        order_placed.send(sender=None)
        calls.append("commit")
    assert calls == ["during send", "commit", "after commit"]


def test_model_signals_wait_for_the_commit_of_their_database(calls: Calls) -> None:
    """post_save's on-commit receiver gets the saved instance after the commit of
    the database it was saved to (the send's ``using``)."""
    seen: list[tuple[Shelf, str]] = []

    def on_saved(sender: type, instance: Shelf, using: str, **kwargs: Any) -> None:
        seen.append((instance, using))

    post_save.connect(on_saved, sender=Shelf, on_commit=True)
    try:
        with transaction.atomic():
            shelf = Shelf.objects.create(name="poetry")
            assert seen == []
    finally:
        post_save.disconnect(on_saved, sender=Shelf)
    assert seen == [(shelf, DEFAULT_DB_ALIAS)]


def test_capture_on_commit_callbacks_captures_and_runs_it(order_placed: Any, calls: Calls) -> None:
    """TestCase.captureOnCommitCallbacks() sees the deferred call, as in a TestCase."""
    with transaction.atomic():
        with TestCase.captureOnCommitCallbacks(execute=True) as captured:
            order_placed.send(sender=None)
            assert calls == ["during send"]
        assert len(captured) == 1
        assert calls == ["during send", "after commit"]
        transaction.set_rollback(True)


def test_a_robust_receivers_failure_is_logged(
    calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    """robust (the default): logged to the tocsin logger; the commit goes on."""
    signal = DjangoSignal()
    signal.connect(calls.receiver("fails", fail=True), on_commit=True, weak=False)
    with caplog.at_level(logging.ERROR, logger="tocsin"), transaction.atomic():
        signal.send(sender=None)
        transaction.on_commit(lambda: calls.append("next callback"))
    assert calls == ["fails", "next callback"]
    assert caplog.messages == [
        "Error calling contrib.django.test_transactions.fails in on_commit() (fails failed)"
    ]


def test_robust_false_raises_from_the_commit_as_on_commit_does(calls: Calls) -> None:
    """robust=False: the failure propagates out of the atomic block, after the
    commit, as with ``on_commit(robust=False)``, and Django's later callbacks
    do not run."""
    signal = DjangoSignal()
    signal.connect(calls.receiver("fails", fail=True), on_commit=True, robust=False, weak=False)

    def commit() -> None:
        with transaction.atomic():
            Shelf.objects.create(name="kept")
            signal.send(sender=None)
            transaction.on_commit(lambda: calls.append("next callback"))

    with pytest.raises(RuntimeError, match="fails failed"):
        commit()
    assert calls == ["fails"]
    assert Shelf.objects.filter(name="kept").exists()  # committed
    Shelf.objects.filter(name="kept").delete()


def test_manual_transaction_management_is_refused_as_django_does(order_placed: Any) -> None:
    transaction.set_autocommit(False)
    try:
        Shelf.objects.exists()  # opens the connection, in manual mode
        with pytest.raises(transaction.TransactionManagementError, match="manual transaction"):
            order_placed.send(sender=None)
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


def test_async_receivers_and_asend(calls: Calls) -> None:
    """asend() outside a transaction runs an async on-commit receiver at once;
    send() in an atomic block defers it, and the commit runs it."""
    signal = DjangoSignal()

    async def notify(sender: object, **kwargs: Any) -> str:
        calls.append("notified")
        return "notified"

    signal.connect(notify, on_commit=True)
    assert asyncio.run(signal.asend(sender=None)) == [(notify, "notified")]
    assert calls == ["notified"]
    with transaction.atomic():  # from sync code: deferred, then run after the commit
        signal.send(sender=None)
        assert calls == ["notified"]
    assert calls == ["notified", "notified"]


def test_a_bound_atomic_scope_names_the_database(order_placed: Any, calls: Calls) -> None:
    """AtomicScope, bound around a send, picks the database to wait for."""
    with transaction.atomic(), oncommit.bind(AtomicScope(DEFAULT_DB_ALIAS)):
        order_placed.send(sender=None)
        assert calls == ["during send"]
    assert calls == ["during send", "after commit"]


def test_atomic_scope_refuses_what_is_not_an_alias(order_placed: Any) -> None:
    """AtomicScope takes an alias; bound with one Django does not know, a send
    fails with Django's error."""
    with pytest.raises(TypeError, match="database alias"):
        AtomicScope(None)  # type: ignore[arg-type]
    with pytest.raises(ConnectionDoesNotExist), oncommit.bind(AtomicScope("nowhere")):
        order_placed.send(sender=None)
    assert repr(AtomicScope()) == "AtomicScope('default')"


def test_a_using_that_names_no_django_database_is_left_to_others(
    order_placed: Any, calls: Calls
) -> None:
    """A send whose ``using`` is not a Django alias (a SQLAlchemy engine's name,
    say) is not deferred to Django: with no other scope, it runs at once."""
    with transaction.atomic():
        order_placed.send(sender=None, using="sqlalchemy-engine")
        assert calls == ["during send", "after commit"]
        order_placed.send(sender=None, using=42)  # not an alias: the default database
        assert calls == ["during send", "after commit", "during send"]
    assert calls == ["during send", "after commit", "during send", "after commit"]


class InADjangoTestCase(TestCase):  # type: ignore[misc]  # Django has no type hints here
    """In a Django TestCase, whose tests run in a transaction that is never
    committed, on-commit receivers wait, and captureOnCommitCallbacks() runs them."""

    def test_on_commit_receivers_wait_and_are_captured(self) -> None:
        calls = Calls()
        signal = DjangoSignal()
        signal.connect(calls.receiver("after commit"), on_commit=True, weak=False)
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            signal.send(sender=None)
            assert calls == []
        assert len(callbacks) == 1
        assert calls == ["after commit"]

    def test_without_capture_they_never_run(self) -> None:
        calls = Calls()
        signal = DjangoSignal()
        signal.connect(calls.receiver("after commit"), on_commit=True, weak=False)
        Shelf.objects.create(name="rolled back with the test")
        signal.send(sender=None)
        assert calls == []
