"""install() and uninstall(): every django.dispatch.Signal on tocsin, and back."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django", reason="tocsin.contrib.django needs Django")

from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.signals import connection_created
from django.db.models.signals import ModelSignal, class_prepared, post_save, pre_migrate, pre_save
from django.dispatch import Signal as DjangoSignal
from django.test.signals import setting_changed
from django.test.utils import override_settings

import tocsin
from tocsin.contrib.django import _bridge, install, installed, uninstall
from tocsin.introspect import all_signals

from .models import Label, Shelf

pytestmark = pytest.mark.usefixtures("tables")


def record_into(calls: list[str], name: str) -> Any:
    def receiver(sender: object, **kwargs: Any) -> str:
        calls.append(name)
        return name

    receiver.__qualname__ = name
    return receiver


@pytest.fixture
def plain() -> Iterator[None]:
    """No integration: the test installs and uninstalls it itself."""
    assert not installed()
    yield
    uninstall()


@pytest.mark.usefixtures("installed_now")
def test_djangos_own_signals_and_new_ones_are_tocsin_signals() -> None:
    """Django's signals, one made after install() and instances of a Signal
    subclass are tocsin Signals, and still Django's (isinstance, repr)."""

    class AuditSignal(DjangoSignal):  # type: ignore[misc]  # an app's own subclass
        pass

    made_after = DjangoSignal()
    for signal in (
        post_save,
        request_started,
        connection_created,
        pre_migrate,
        class_prepared,
        setting_changed,
        made_after,
        AuditSignal(use_caching=True),
    ):
        assert isinstance(signal, tocsin.Signal)
        assert isinstance(signal, DjangoSignal)
    assert isinstance(post_save, ModelSignal)
    assert repr(post_save).startswith("<django.db.models.signals.ModelSignal at 0x")


def test_receivers_connected_before_install_keep_their_order_uid_and_weakness(plain: None) -> None:
    """Receivers connected to a Django signal before install() are called by
    tocsin, in connection order; the dispatch_uid still identifies its
    connection, and a weak receiver is still held weakly."""
    calls: list[str] = []
    signal = DjangoSignal()
    first, second, third = (record_into(calls, name) for name in ("first", "second", "third"))
    signal.connect(first)
    signal.connect(second, dispatch_uid="the-second")
    signal.connect(third, sender=Shelf, weak=False)

    install()
    assert signal.send(sender=Shelf) == [(first, "first"), (second, "second"), (third, "third")]
    assert calls == ["first", "second", "third"]
    assert signal.send(sender=Label) == [(first, "first"), (second, "second")]

    again = record_into(calls, "again")
    signal.connect(again, dispatch_uid="the-second", weak=False)  # ignored: the uid is taken
    assert signal.send(sender=None) == [(first, "first"), (second, "second")]
    assert signal.disconnect(dispatch_uid="the-second") is True
    del first
    gc.collect()
    assert [r for r, _ in signal.send(sender=Shelf)] == [third]


def test_the_signal_argument_is_the_django_signal(installed_now: None) -> None:
    """Receivers get the Django signal itself as ``signal``, as before."""
    seen: list[object] = []

    def receiver(signal: object, **kwargs: Any) -> None:
        seen.append(signal)

    request_started.connect(receiver)
    try:
        request_started.send(sender=None)
    finally:
        request_started.disconnect(receiver)
    assert seen == [request_started]


def test_model_signals_keep_djangos_arguments(installed_now: None) -> None:
    """save() sends pre_save and post_save through tocsin, with Django's arguments,
    to a receiver connected with a lazy "app_label.Model" sender."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def on_save(sender: type, signal: object, **kwargs: Any) -> None:
        seen.append(("pre" if signal is pre_save else "post", kwargs))

    pre_save.connect(on_save, sender="tocsin_tests.Shelf")
    post_save.connect(on_save, sender="tocsin_tests.Shelf")
    try:
        shelf = Shelf.objects.create(name="fiction")
        Label.objects.create(name="ignored")  # another sender
    finally:
        pre_save.disconnect(on_save, sender=Shelf)
        post_save.disconnect(on_save, sender=Shelf)
    assert [when for when, _ in seen] == ["pre", "post"]
    assert seen[1][1]["instance"] is shelf
    assert seen[1][1]["created"] is True
    assert seen[1][1]["using"] == DEFAULT_DB_ALIAS


def test_a_lazy_sender_connected_before_install_is_connected_when_its_model_is(
    plain: None,
) -> None:
    """A receiver waiting, from before install(), for a model that is registered
    after it, is connected to the tocsin signal then, after the others."""
    from django.apps import apps
    from django.db import models

    calls: list[str] = []
    first, late = record_into(calls, "first"), record_into(calls, "late")
    post_save.connect(first, weak=False)
    post_save.connect(late, sender="tocsin_tests.LateModel", weak=False)
    install()

    class LateModel(models.Model):  # type: ignore[misc]  # Django has no type hints here
        class Meta:
            app_label = "tocsin_tests"

    try:
        responses = post_save.send(sender=LateModel, instance=None)
        assert responses == [(first, "first"), (late, "late")]
        assert post_save.disconnect(late, sender=LateModel) is True
    finally:
        post_save.disconnect(first)
        del apps.all_models["tocsin_tests"]["latemodel"]
        apps.clear_cache()


@pytest.mark.usefixtures("installed_now")
def test_tocsins_test_helpers_see_djangos_sends() -> None:
    """tocsin.testing's capture() and muted() work on Django's own signals, as
    Django's save() sends them."""
    from tocsin.testing import capture, muted

    calls: list[str] = []
    receiver = record_into(calls, "on_save")
    post_save.connect(receiver, sender=Shelf)
    try:
        with capture(post_save, sender=Shelf) as sent:
            shelf = Shelf.objects.create(name="captured")
        sent.assert_sent_once_with(
            sender=Shelf,
            instance=shelf,
            created=True,
            update_fields=None,
            raw=False,
            using=DEFAULT_DB_ALIAS,
        )
        assert calls == ["on_save"]
        with muted(post_save):
            Shelf.objects.create(name="muted")
        assert calls == ["on_save"]
    finally:
        post_save.disconnect(receiver, sender=Shelf)


@pytest.mark.usefixtures("installed_now")
def test_sends_and_disconnects_answer_as_djangos() -> None:
    """send_robust, asend, asend_robust, has_listeners and disconnect behave as
    Django's, through tocsin."""
    signal = DjangoSignal()

    def fails(sender: object, **kwargs: Any) -> None:
        raise ValueError("broken")

    async def later(sender: object, **kwargs: Any) -> str:
        return "later"

    assert signal.has_listeners() is False
    signal.connect(fails)
    signal.connect(later)
    assert signal.has_listeners() is True
    [(_, error), (_, response)] = signal.send_robust(sender=None)
    assert isinstance(error, ValueError)
    assert response == "later"
    [(_, error), (_, response)] = asyncio.run(signal.asend_robust(sender=None))
    assert isinstance(error, ValueError)
    assert signal.disconnect(fails) is True
    assert signal.disconnect(fails) is False
    assert asyncio.run(signal.asend(sender=None)) == [(later, "later")]


@pytest.mark.usefixtures("installed_now")
def test_djangos_attributes_still_work() -> None:
    """receivers rows, sender_receivers_cache.clear(), _live_receivers() and
    use_caching, which Django's code and tests read, still work."""
    calls: list[str] = []
    receiver = record_into(calls, "r")
    post_save.connect(receiver, sender=Shelf)
    try:
        assert post_save.use_caching is True
        [row] = [row for row in post_save.receivers if row[1]() is receiver]
        assert row.sender_ref is not None
        assert row.sender_ref() is Shelf
        post_save.sender_receivers_cache.clear()
        sync, _async = post_save._live_receivers(Shelf)
        assert receiver in sync
    finally:
        post_save.disconnect(receiver, sender=Shelf)


def test_uninstall_gives_the_signals_back_to_django_with_their_receivers(plain: None) -> None:
    """After uninstall(), Django's Signal dispatches again, with the receivers
    connected before and during the installation, in order; senders and
    dispatch_uids still identify connections, on-commit and priority settings
    are dropped, and a weak receiver is still held weakly, by Django now."""
    calls: list[str] = []
    signal = DjangoSignal()
    before = record_into(calls, "before")
    during = record_into(calls, "during")
    weak = record_into(calls, "weak")
    signal.connect(before)
    install()
    signal.connect(during, sender=Shelf, on_commit=True, priority=5, dispatch_uid="during-uid")
    signal.connect(weak, dispatch_uid="weak-uid")
    uninstall()

    assert not isinstance(signal, tocsin.Signal)
    assert type(signal) is DjangoSignal
    assert signal not in all_signals()
    assert signal.send(sender=Shelf) == [(before, "before"), (during, "during"), (weak, "weak")]
    assert signal.send(sender=Label) == [(before, "before"), (weak, "weak")]
    del weak
    gc.collect()
    assert [r for r, _ in signal.send(sender=Shelf)] == [before, during]
    assert len(signal.receivers) == 2  # Django purged it: its weak reference called back
    assert signal.disconnect(dispatch_uid="weak-uid") is False  # gone already
    same_uid = record_into(calls, "same uid")
    signal.connect(same_uid, sender=Shelf, dispatch_uid="during-uid", weak=False)  # ignored
    assert [r for r, _ in signal.send(sender=Shelf)] == [before, during]
    assert signal.disconnect(sender=Shelf, dispatch_uid="during-uid") is True
    assert [r for r, _ in signal.send(sender=Shelf)] == [before]
    assert type(post_save) is ModelSignal


def test_bound_method_receivers_stay_weak_both_ways(plain: None) -> None:
    """A bound method, held by Django through a WeakMethod, is held weakly by
    tocsin after install() and by Django again after uninstall()."""

    class Audit:
        def on_send(self, sender: object, **kwargs: Any) -> str:
            return "audited"

    signal = DjangoSignal()
    kept, dropped = Audit(), Audit()
    signal.connect(kept.on_send)
    install()
    signal.connect(dropped.on_send)
    assert [response for _, response in signal.send(sender=None)] == ["audited", "audited"]
    del dropped
    gc.collect()
    assert signal.send(sender=None) == [(kept.on_send, "audited")]
    uninstall()
    assert signal.send(sender=None) == [(kept.on_send, "audited")]
    del kept
    gc.collect()
    assert signal.send(sender=None) == []


def test_install_and_uninstall_twice_do_nothing_more(plain: None) -> None:
    """Both are idempotent; installed() says which is in effect."""
    install()
    install()
    assert installed()
    assert isinstance(post_save, tocsin.Signal)
    uninstall()
    uninstall()
    assert not installed()
    assert type(post_save) is ModelSignal


def test_a_signal_with_broken_rows_makes_install_fail_and_change_nothing(plain: None) -> None:
    """A receivers list that is not Django's rows is refused with ValueError,
    naming the signal and what to fix; every signal stays Django's."""
    broken = DjangoSignal()
    broken.receivers = ["not a row"]
    with pytest.raises(ValueError, match=r"cannot move the receivers of .* Django's rows"):
        install()
    assert not installed()
    assert type(post_save) is ModelSignal
    assert broken.receivers == ["not a row"]
    del broken
    gc.collect()


@pytest.mark.usefixtures("installed_now")
def test_connect_refuses_bad_input_with_djangos_or_tocsins_errors() -> None:
    """Bad receivers, options and lazy senders are refused at connect()."""
    with pytest.raises(TypeError, match="must be callable"):
        request_finished.connect(42, weak=False)
    with pytest.raises(ValueError, match=r"accept keyword arguments \(\*\*kwargs\)"):
        request_finished.connect(lambda sender: None, weak=False)
    with pytest.raises(TypeError, match="on_commit must be True or False"):
        post_save.connect(record_into([], "r"), on_commit="yes")
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_comit'"):
        post_save.connect(record_into([], "r"), on_comit=True)
    with pytest.raises(ValueError, match="Invalid model reference 'nonsense'"):
        post_save.connect(record_into([], "r"), sender="nonsense")
    with pytest.raises(TypeError, match="dispatch_uid"):
        request_finished.disconnect()


@pytest.mark.usefixtures("installed_now")
def test_sends_racing_connects_from_threads() -> None:
    """Threads that connect and disconnect while others send never break a
    send: each send sees a consistent set of receivers."""
    signal = DjangoSignal()
    anchor = record_into([], "anchor")
    signal.connect(anchor)
    errors: list[BaseException] = []
    stop = threading.Event()

    def sender() -> None:
        try:
            while not stop.is_set():
                responses = signal.send(sender=None)
                assert responses[0] == (anchor, "anchor")
        except BaseException as err:
            errors.append(err)

    def connector(n: int) -> None:
        try:
            kept = [record_into([], f"r{n}-{i}") for i in range(200)]
            for receiver in kept:
                signal.connect(receiver)
            for receiver in kept:
                assert signal.disconnect(receiver)
        except BaseException as err:
            errors.append(err)

    senders = [threading.Thread(target=sender) for _ in range(2)]
    connectors = [threading.Thread(target=connector, args=(n,)) for n in range(4)]
    for thread in senders + connectors:
        thread.start()
    for thread in connectors:
        thread.join()
    stop.set()
    for thread in senders:
        thread.join()
    assert errors == []
    assert signal.send(sender=None) == [(anchor, "anchor")]


def test_override_settings_sends_through_tocsin(installed_now: None) -> None:
    """Django's own code (override_settings) sends through tocsin: a tocsin hook
    on setting_changed sees it."""
    from tocsin import hooks

    seen: list[str] = []

    class Watch(hooks.SendHook):
        def observe(self, send: hooks.SendInfo) -> None:
            seen.append(send.method)

    undo = hooks.install(Watch(), setting_changed)
    try:
        with override_settings(TOCSIN_TEST=True):
            pass
    finally:
        undo()
    assert seen == ["send", "send_robust"]


def test_a_hook_removed_after_uninstall_leaves_the_django_signal_alone(plain: None) -> None:
    """A hook installed on a converted signal can still be undone once the
    signal is Django's again; global hooks skip such signals too."""
    from tocsin import hooks

    signal = DjangoSignal()
    install()
    undo_one = hooks.install(hooks.SendHook(), signal)
    uninstall()
    undo_one()
    undo_all = hooks.install(hooks.SendHook())
    undo_all()
    assert signal.send(sender=None) == []


def test_a_lazy_connect_made_while_installed_works_after_uninstall(plain: None) -> None:
    """A connect (or disconnect) waiting for its model calls the signal's method
    of the moment: after uninstall(), Django's."""
    from django.apps import apps
    from django.db import models

    calls: list[str] = []
    receiver, gone = record_into(calls, "waiting"), record_into(calls, "gone")
    install()
    post_save.connect(receiver, sender="tocsin_tests.AfterModel", weak=False)
    post_save.connect(gone, sender="tocsin_tests.AfterModel", weak=False)
    assert post_save.disconnect(gone, sender="tocsin_tests.AfterModel") is None  # as Django
    uninstall()

    class AfterModel(models.Model):  # type: ignore[misc]  # Django has no type hints here
        class Meta:
            app_label = "tocsin_tests"

    try:
        assert post_save.send(sender=AfterModel, instance=None) == [(receiver, "waiting")]
        assert post_save.disconnect(receiver, sender=AfterModel) is True
    finally:
        del apps.all_models["tocsin_tests"]["aftermodel"]
        apps.clear_cache()


@pytest.mark.parametrize("when", ["before install", "while installed"])
def test_djangos_check_still_names_a_lazy_sender_that_never_came(plain: None, when: str) -> None:
    """Django's system check for lazy references reports a receiver waiting for a
    model that does not exist as Django does (signals.E001), whether it was
    connected before install() or after."""
    from django.apps.registry import Apps
    from django.core.checks.model_checks import _check_lazy_references

    def on_missing(sender: object, **kwargs: Any) -> None:
        pass

    registry = Apps(installed_apps=())
    if when == "before install":
        post_save.connect(on_missing, sender="missing.Model", apps=registry)
        install()
        _bridge.redirect_pending(registry)  # install() does it for django.apps.apps
    else:
        install()
        post_save.connect(on_missing, sender="missing.Model", apps=registry)
    [error] = _check_lazy_references(registry)
    assert error.id == "signals.E001"
    assert error.msg == (
        "The function 'on_missing' was connected to the 'post_save' signal with a lazy "
        "reference to the sender 'missing.model', but app 'missing' isn't installed."
    )
