"""``Signal`` and ``receiver``: Django's dispatcher, rebuilt for speed and safety.

How it is laid out (see docs/how-it-works.md for the long walk-through):

* ``_registry`` is a dict from lookup key to connection, in connection order.
  Looking a key up makes duplicate detection and ``disconnect()`` O(1), where
  Django scans a list. The most common connection (a weakly referenced,
  synchronous receiver for any sender) is stored as the bare
  ``weakref.ref``, which keeps a connected receiver under 150 bytes; any other
  connection is a :class:`_Connection`.
* A *plan* is what ``send()`` needs for one sender: a tuple of derefs for the
  sync receivers, and the rest (async and on-commit receivers) in a
  :class:`_Slow`, built under the lock from the registry the first time it is
  needed and cached until the registry changes. ``send()`` itself takes no
  lock and never scans the registry.
* Weak-reference callbacks only flag the signal dirty and drop the cached
  plans; the dead entries are purged under the lock by the next connect,
  disconnect or plan build (a callback can run during garbage collection
  while this very thread is half-way through changing the registry).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, SupportsIndex, TypeVar, overload

from . import _async, diagnostics, oncommit
from ._inspect import check_receiver, describe, is_bound_method
from ._refs import NONE_ID, Deref, WeakMethodRef, deref_for, make_id

if TYPE_CHECKING:
    from typing import ParamSpec

    from .typed import ReceiverDecorator, TypedSignal

    _P = ParamSpec("_P")

__all__ = ["Signal", "receiver"]

logger = logging.getLogger("tocsin")

R = TypeVar("R", bound=Callable[..., Any])

# Registry keys of connections restricted to one sender are tagged with this,
# so that they can never equal a key of an "any sender" connection (which is
# the receiver's id or the dispatch_uid itself).
_SENDER = object()

# Connection.on_commit: an ordinary receiver, or one that waits for the
# commit and whose failures are logged (robust) or raised.
_NOW, _ON_COMMIT_ROBUST, _ON_COMMIT_RAISE = 0, 1, 2


class _Later(NamedTuple):
    """An on-commit receiver in a plan."""

    deref: Deref
    is_async: bool
    robust: bool


class _Slow(NamedTuple):
    """The receivers send() does not call inline: async and on-commit ones."""

    async_: tuple[Deref, ...]
    later: tuple[_Later, ...]


# (sync derefs, _Slow or ()), or () when no receiver matches: falsy, so that
# send() with nobody listening returns after one test, and () in the second
# place keeps the all-sync send to one more test.
Derefs = tuple[tuple[Deref, ...], _Slow | tuple[()]]
Plan = Derefs | tuple[()]
_NO_PLAN: Plan = ()


class _Connection:
    """A connection that is not the common case (see the module docstring)."""

    __slots__ = ("is_async", "on_commit", "priority", "ref", "sender_key", "sender_ref", "weak")

    def __init__(
        self,
        ref: Any,
        weak: bool,
        sender_key: Hashable,
        sender_ref: weakref.ref[Any] | None,
        is_async: bool,
        on_commit: int = _NOW,
        priority: int = 0,
    ) -> None:
        self.ref = ref
        self.weak = weak
        self.sender_key = sender_key
        self.sender_ref = sender_ref
        self.is_async = is_async
        self.on_commit = on_commit
        self.priority = priority

    def is_dead(self) -> bool:
        if self.weak and self.ref() is None:
            return True
        return self.sender_ref is not None and self.sender_ref() is None


class ReceiverEntry(NamedTuple):
    """One row of :attr:`Signal.receivers`, in Django 6's layout."""

    lookup_key: tuple[Hashable, Hashable]
    receiver: Any
    sender_ref: weakref.ref[Any] | None
    is_async: bool


class _ExtendedRow(ReceiverEntry):
    """A row of a connection with tocsin's options (``on_commit``, ``priority``):
    Django's layout, plus the options, so that assigning saved rows back to
    ``receivers`` keeps them."""

    on_commit: int
    priority: int

    def _replace(self, /, **fields: Any) -> _ExtendedRow:
        row = super()._replace(**fields)
        row.on_commit, row.priority = self.on_commit, self.priority
        return row


# Every Signal alive, for tocsin.introspect and the command line.
_every_signal: weakref.WeakSet[Signal] = weakref.WeakSet()


def _is_dead(entry: Any) -> bool:
    if type(entry) is _Connection:
        return entry.is_dead()
    return entry() is None


class Signal:
    """A signal that receivers connect to and senders send, as ``django.dispatch.Signal``.

    :param use_caching: accepted for compatibility with Django, where it
        turns on a per-sender cache. tocsin always caches, safely: the cache
        also works for ``None`` and for senders that cannot be weakly
        referenced, which Django's rejects with ``TypeError``.
    """

    def __init__(self, use_caching: bool = False) -> None:
        self.use_caching = use_caching
        _every_signal.add(self)  # for tocsin.introspect
        # Reentrant, unlike Django's Lock: code that holds ``signal.lock``
        # (as some Django add-ons do) may still read or assign ``receivers``.
        self.lock = threading.RLock()
        self._registry: dict[Hashable, Any] = {}
        # Sender key -> number of connections restricted to that sender.
        # While it is empty, send() skips the per-sender lookup entirely.
        self._senders: dict[Hashable, int] = {}
        # The plan for every sender, while no connection is sender-filtered;
        # None when not built yet or when some connection is.
        self._any_plan: Plan | None = None
        # Plans of the senders in _senders, keyed by their sender key (id(),
        # or Django's (id(self), id(func)) for a bound method), plus the plan
        # of every other sender under NONE_ID. Only keys of senders that have
        # connections are cached, so that a dead sender's id() reused by a
        # new object can never find a stale plan. Exposed under Django's name
        # so that code calling ``sender_receivers_cache.clear()`` keeps working.
        self._plans: dict[Hashable, Plan] = {}
        # Bumped on every change of the registry; see _ReceiverList.
        self._version = 0
        self._dead_receivers = False
        # One bound method shared by every weak reference this signal makes.
        self._on_dead = self._flag_dead_receivers

    # -- registration --------------------------------------------------------------

    def connect(
        self,
        receiver: Callable[..., Any],
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        *,
        on_commit: bool = False,
        robust: bool | None = None,
        priority: int = 0,
    ) -> None:
        """Connect *receiver* so that it is called when this signal is sent.

        :param receiver: a callable that accepts ``**kwargs``: a function, a
            bound method, a ``functools.partial`` or a callable object, sync
            or async. Checked now, not when the signal is first sent.
        :param sender: receive only what this object sends (compared by
            identity); ``None`` receives from every sender.
        :param weak: hold *receiver* through a weak reference, so that
            connecting it does not keep it alive; it is disconnected when it is
            garbage collected. Lambdas, closures and partials that nothing else
            references vanish at once: connect them with ``weak=False``.
        :param dispatch_uid: a hashable identifier; a second connection with
            the same (truthy) ``dispatch_uid`` and sender is ignored.

        :param on_commit: (tocsin only) call *receiver* only after the
            transaction the send happened in commits, and never if it rolls
            back; outside a transaction it is called at once. See
            :mod:`tocsin.oncommit` and docs/after-commit.md.
        :param robust: for an ``on_commit`` receiver: log its failures after
            the commit (True, the default) or raise them from the commit.
        :param priority: (tocsin only) receivers with a higher priority are
            called first; equal priorities (all are 0 by default) keep
            connection order. Sync receivers still come before async ones.

        Connecting the same receiver (or ``dispatch_uid``) to the same sender
        twice is ignored: the first connection wins and keeps its place.
        """
        receiver_is_async = check_receiver(receiver)
        later = _NOW
        if on_commit is not False or robust is not None:
            later = _on_commit_mode(on_commit, robust)
        if priority != 0 or type(priority) is not int:
            _check_priority(priority)
        key: Hashable
        if sender is None and not dispatch_uid:  # the common case, inline
            key = make_id(receiver)
        else:
            key = self._lookup_key(receiver, sender, dispatch_uid)
        ref: Any = receiver
        if weak:
            ref = self._weak_ref(receiver, watch=True)
        sender_ref = None
        if sender is not None:
            # As in Django, a sender that cannot be weakly referenced is
            # matched by id() alone.
            with contextlib.suppress(TypeError):
                sender_ref = weakref.ref(sender, self._on_dead)
        entry: Any
        if (
            weak
            and sender is None
            and not receiver_is_async
            and not later
            and not priority
            and type(ref) is weakref.ref
        ):
            entry = ref  # the compact common case
        else:
            sender_key = NONE_ID if sender is None else make_id(sender)
            entry = _Connection(
                ref, bool(weak), sender_key, sender_ref, receiver_is_async, later, priority
            )
        replaced = None
        with self.lock:
            purged = self._clear_dead_receivers() if self._dead_receivers else None
            existing = self._registry.get(key)
            if existing is not None and _is_dead(existing):
                # Dead, but not flagged yet (its weakref callback has not run,
                # or reports elsewhere): the new connection takes its place.
                replaced = self._remove(key)
                existing = None
            if existing is None:
                self._registry[key] = entry
                if sender is not None:
                    self._count_sender(key, +1)
                self._invalidate()
        del purged, replaced  # only now: a receiver's __del__ may use this signal

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable = None,
    ) -> bool:
        """Disconnect *receiver* (or the receiver connected with *dispatch_uid*).

        *sender* must be the one given to ``connect()``: ``disconnect(r)`` does
        not remove ``connect(r, sender=A)``. Returns whether a connection was
        removed. Weakly connected receivers need not be disconnected: they go
        when they are garbage collected.
        """
        if receiver is None and not dispatch_uid:
            raise TypeError(
                "disconnect() needs the receiver to disconnect, or the dispatch_uid "
                "it was connected with."
            )
        key: Hashable
        if sender is None and not dispatch_uid:  # the common case, inline
            key = make_id(receiver)
        else:
            key = self._lookup_key(receiver, sender, dispatch_uid)
        with self.lock:
            purged = self._clear_dead_receivers() if self._dead_receivers else None
            entry = self._remove(key)
            if entry is None:
                return False
            self._invalidate()
        del purged, entry  # only now: a receiver's __del__ may use this signal
        return True

    def has_listeners(self, sender: object = None) -> bool:
        """Whether sending from *sender* would call at least one live receiver.

        With the default ``sender=None`` only receivers connected for any
        sender count, as in Django.
        """
        sync, slow = self._receivers_of(sender)
        for deref in sync:
            if deref() is not None:
                return True
        if not slow:
            return False
        return any(deref() is not None for deref in _slow_derefs(slow))

    # -- sending -------------------------------------------------------------------

    def send(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Call every receiver of *sender* and return ``[(receiver, response), ...]``.

        Receivers are called in connection order as
        ``receiver(signal=self, sender=sender, **named)``. An exception raised
        by a receiver propagates at once and the remaining receivers are not
        called (use :meth:`send_robust` to call them all).

        Async receivers run after the sync ones, concurrently, and their
        responses follow in connection order. From a thread whose event loop
        is running, ``send()`` raises :class:`AsyncReceiversInLoopError`
        before calling anything when async receivers are connected.
        """
        # The hot path: no lock, no registry scan, one lookup of a cached plan.
        plan = self._any_plan
        if not plan:
            if plan is not None:  # (): nobody is listening
                return []
            # Not built yet, or some receivers are sender-filtered.
            if not (plan := self._plans.get(id(sender)) or self._plan(sender)):
                return []
        sync, slow = plan
        if slow:
            return self._send_slow(sender, named, plan, robust=False)
        if len(sync) == 1:  # the most common case, without building a snapshot list
            receiver = sync[0]()
            if receiver is None:
                return []
            return [(receiver, receiver(signal=self, sender=sender, **named))]
        # Dereference every receiver before calling any, so that what a
        # receiver does to the others cannot change this send.
        responses = []
        for receiver in [deref() for deref in sync]:
            if receiver is not None:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
        return responses

    def send_robust(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Like :meth:`send`, but an ``Exception`` raised by a receiver is caught.

        The exception (with its ``__traceback__``) takes the place of that
        receiver's response, is logged with its traceback to the ``tocsin``
        logger, and the remaining receivers are still called.
        ``BaseException``\\ s such as ``KeyboardInterrupt`` still propagate.
        """
        plan = self._receivers_of(sender)
        if plan[1]:
            return self._send_slow(sender, named, plan, robust=True)
        return self._call_robust(_live(plan[0]), sender, named)

    async def asend(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Send from async code; see :meth:`send`.

        Sync receivers are called first, together, off the event loop (in
        asgiref's ``sync_to_async`` when it is installed, as Django does);
        then async receivers run concurrently. One failing async receiver's
        exception is re-raised as is; several are raised as an
        ``ExceptionGroup``.
        """
        return await self._asend(sender, named, robust=False)

    async def asend_robust(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Send from async code, catching exceptions; see :meth:`send_robust`."""
        return await self._asend(sender, named, robust=True)

    async def _asend(
        self, sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Any, Any]]:
        return await self._asend_plan(self._receivers_of(sender), sender, named, robust)

    async def _asend_plan(
        self, plan: Derefs, sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Any, Any]]:
        sync_receivers, async_receivers, deferred = self._gather(plan, sender, named)
        responses: list[tuple[Any, Any]] = []
        with _dropped_on_failure(deferred):
            if sync_receivers:
                call = self._call_robust if robust else self._call_all
                responses = await _async.run_sync_off_loop(
                    lambda: call(sync_receivers, sender, named)
                )
                # The worker thread may hold the job a moment longer: let it
                # hold no receiver, so that a weak one can be collected at once.
                sync_receivers.clear()
            if async_receivers:
                responses.extend(await self._run_async(async_receivers, sender, named, robust))
        responses.extend(deferred)
        return responses

    def _call_all(
        self, receivers: Iterable[Any], sender: object, named: dict[str, Any]
    ) -> list[tuple[Any, Any]]:
        return [(r, r(signal=self, sender=sender, **named)) for r in receivers]

    def _call_robust(
        self, receivers: Iterable[Any], sender: object, named: dict[str, Any]
    ) -> list[tuple[Any, Any]]:
        responses = []
        for receiver in receivers:
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as err:
                self._log_robust_failure(receiver, err)
                response = err
            responses.append((receiver, response))
        return responses

    async def _run_async(
        self, receivers: Sequence[Any], sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Any, Any]]:
        on_error = self._robust_failure if robust else None
        results = await _async.run_concurrently(receivers, self, sender, named, on_error)
        return list(zip(receivers, results, strict=True))

    def _send_slow(
        self,
        sender: object,
        named: dict[str, Any],
        plan: Derefs,
        robust: bool,
        await_: Callable[[Awaitable[Any]], Any] | None = None,
    ) -> list[tuple[Any, Any]]:
        """send() when async or on-commit receivers are connected.

        *await_* is how to wait for the async receivers: by default on a
        private loop (or asgiref's), which needs this thread to be outside a
        running loop. An integration that runs inside one without being able
        to ``await`` (SQLAlchemy's greenlets) passes its own.
        """
        sync_receivers, async_receivers, deferred = self._gather(plan, sender, named)
        with _dropped_on_failure(deferred):
            if async_receivers and await_ is None:
                method = "send_robust()" if robust else "send()"
                _async.check_no_running_loop(f"Signal.{method}")
            if robust:
                responses = self._call_robust(sync_receivers, sender, named)
            else:
                responses = self._call_all(sync_receivers, sender, named)
            if async_receivers:

                def make() -> Awaitable[list[tuple[Any, Any]]]:
                    return self._run_async(async_receivers, sender, named, robust)

                responses.extend(
                    await_(make()) if await_ is not None else _async.run_from_sync(make)
                )
        responses.extend(deferred)
        return responses

    def _gather(
        self, plan: Derefs, sender: object, named: dict[str, Any]
    ) -> tuple[list[Any], list[Any], list[tuple[Any, Any]]]:
        """The live sync and async receivers a send calls now, and the
        ``(receiver, Deferred)`` responses of those it defers."""
        sync, slow = plan
        sync_receivers = _live(sync)
        if not slow:
            return sync_receivers, [], []
        async_receivers = _live(slow.async_)
        deferred: list[tuple[Any, Any]] = []
        if slow.later:
            deferred = self._defer(slow.later, sender, named, sync_receivers, async_receivers)
        return sync_receivers, async_receivers, deferred

    def _defer(
        self,
        later: tuple[_Later, ...],
        sender: object,
        named: dict[str, Any],
        sync_receivers: list[Any],
        async_receivers: list[Any],
    ) -> list[tuple[Any, Any]]:
        """Defer the on-commit receivers to the send's transaction, if it has one.

        Returns their ``(receiver, Deferred)`` responses. With no transaction,
        they join *sync_receivers* / *async_receivers* (after the others) and
        are called at once, like any receiver of this send.
        """
        live = [(r, item) for item in later if (r := item.deref()) is not None]
        if not live:
            return []
        scope = oncommit.find_scope(sender, named)
        responses: list[tuple[Any, Any]] = []
        for receiver, item in live:
            if scope is not None:
                # Under tracing, the receiver is wrapped (see tracing.py): the
                # Deferred must hold the receiver itself, and the trace hears of it.
                original: Any = getattr(receiver, "_tocsin_traced", receiver)
                call = oncommit.Deferred(self, original, sender, named, item.robust)
                if scope.defer(call):
                    if original is not receiver:
                        receiver.deferred(call)
                    responses.append((receiver, call))
                    continue
            (async_receivers if item.is_async else sync_receivers).append(receiver)
        return responses

    def _log_robust_failure(self, receiver: Any, err: Exception) -> None:
        # Django's message, word for word, but a receiver without a
        # __qualname__ (a partial, a callable object) is named, not fatal.
        receiver = getattr(receiver, "_tocsin_traced", receiver)  # see tracing.py
        name = getattr(receiver, "__qualname__", None)
        logger.error(
            "Error calling %s in Signal.send_robust() (%s)",
            name if isinstance(name, str) else describe(receiver),
            err,
            exc_info=err,
        )

    def _robust_failure(self, receiver: Any, err: Exception) -> Exception:
        self._log_robust_failure(receiver, err)
        return err

    # -- plans ---------------------------------------------------------------------

    def _receivers_of(self, sender: object) -> Derefs:
        """The ``(sync, slow)`` plan for *sender*; what send() inlines."""
        plan = self._any_plan
        if plan is None:
            plan = self._plans.get(id(sender)) if self._senders else None
            if plan is None:
                plan = self._plan(sender)
        return plan or ((), ())

    def _plan(self, sender: object) -> Plan:
        """The plan for *sender*, built and cached if needed (the slow path)."""
        if not self._senders:
            plan = self._any_plan
        else:
            key = make_id(sender)
            if key not in self._senders:
                key = NONE_ID  # no connection is restricted to this sender
            plan = self._plans.get(key)
        if plan is not None:
            return plan
        with self.lock:
            purged = self._clear_dead_receivers()
            if not self._senders:
                if self._any_plan is None:
                    self._any_plan = self._build_plan(NONE_ID)
                plan = self._any_plan
            else:
                key = make_id(sender)
                if key not in self._senders:
                    key = NONE_ID
                plan = self._plans.get(key)
                if plan is None:
                    plan = self._plans[key] = self._build_plan(key)
        del purged  # only now: a receiver's __del__ may use this signal
        return plan

    def _build_plan(self, sender_key: Hashable) -> Plan:
        # Caller holds self.lock.
        sync: list[Deref] = []
        async_: list[Deref] = []
        later: list[_Later] = []
        entries: Iterable[Any] = self._registry.values()
        if any(type(e) is _Connection and e.priority for e in entries):
            # A stable sort: equal priorities keep connection order.
            entries = sorted(entries, key=_priority, reverse=True)
        for entry in entries:
            if type(entry) is not _Connection:
                sync.append(entry)
                continue
            if entry.sender_key not in (NONE_ID, sender_key):
                continue
            deref = deref_for(entry.ref, entry.weak)
            if entry.on_commit:
                later.append(_Later(deref, entry.is_async, entry.on_commit == _ON_COMMIT_ROBUST))
            else:
                (async_ if entry.is_async else sync).append(deref)
        if not sync and not async_ and not later:
            return _NO_PLAN
        slow: _Slow | tuple[()] = _Slow(tuple(async_), tuple(later)) if async_ or later else ()
        return tuple(sync), slow

    def _remove(self, key: Hashable) -> Any:
        """Remove and return the connection at *key*, or None; caller holds self.lock."""
        entry = self._registry.pop(key, None)
        if entry is not None:
            self._count_sender(key, -1)
        return entry

    def _count_sender(self, key: Hashable, change: int) -> None:
        # Keep _senders in step with the registry; caller holds self.lock.
        if type(key) is not tuple or not key or key[0] is not _SENDER:
            return
        count = self._senders.get(key[2], 0) + change
        if count:
            self._senders[key[2]] = count
        else:
            del self._senders[key[2]]

    def _invalidate(self) -> None:
        """The registry changed: drop the plans, and detach ``receivers`` lists."""
        self._any_plan = None
        self._plans.clear()
        self._version += 1

    def _drop_plans(self) -> None:
        self._any_plan = None
        self._plans.clear()

    def _flag_dead_receivers(self, reference: object = None) -> None:
        # Called by weak-reference callbacks, possibly in the middle of a
        # garbage collection while this thread is changing the registry under
        # self.lock: flag only, and let the next connect/disconnect/plan build
        # purge under the lock.
        # Dropping the plans is safe without the lock and makes the next send
        # rebuild (and so purge) instead of carrying a dead reference.
        self._dead_receivers = True
        self._drop_plans()

    def _clear_dead_receivers(self) -> dict[Hashable, Any] | None:
        """Drop the connections whose receiver or sender died; caller holds self.lock.

        Returns the old registry, which the caller must keep until it has
        released the lock: dropping it may free a strongly connected receiver
        whose ``__del__`` uses this signal, which must not find it half-changed.
        """
        if not self._dead_receivers:
            return None
        self._dead_receivers = False
        old = self._registry
        self._registry = {k: e for k, e in old.items() if not _is_dead(e)}
        self._senders = _count_senders(self._registry)
        self._invalidate()
        return old

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _lookup_key(receiver: object, sender: object, dispatch_uid: Hashable) -> Hashable:
        if dispatch_uid:
            try:
                hash(dispatch_uid)
            except TypeError:
                raise TypeError(
                    f"dispatch_uid must be hashable, got {type(dispatch_uid).__name__} "
                    f"{dispatch_uid!r}; use a string such as 'myapp.on_save'."
                ) from None
            identity: Hashable = dispatch_uid
        else:
            identity = make_id(receiver)
        if sender is None:
            return identity
        return (_SENDER, identity, make_id(sender))

    def _weak_ref(self, receiver: Callable[..., Any], *, watch: bool = False) -> Any:
        try:
            if is_bound_method(receiver):
                return WeakMethodRef(receiver, self._on_dead)
            if watch and diagnostics._switch.on and diagnostics.ephemeral(receiver):
                return weakref.ref(receiver, diagnostics.watch(receiver, self._on_dead))
            return weakref.ref(receiver, self._on_dead)
        except TypeError:
            raise TypeError(
                f"cannot weakly reference receiver {describe(receiver)} "
                f"({type(receiver).__name__} objects do not support weak references); "
                f"connect it with weak=False."
            ) from None

    def _live_receivers(self, sender: object) -> tuple[list[Any], list[Any]]:
        """The live ``(sync, async)`` receivers of *sender*, as in Django 5.0+.

        Kept for code written against Django's private method. tocsin's own
        ``send()`` does not call it, so patching it does not observe sends.
        """
        sync, slow = self._receivers_of(sender)
        receivers = _live(sync), _live(slow.async_) if slow else []
        if slow:
            for item in slow.later:  # on-commit receivers are receivers too
                if (r := item.deref()) is not None:
                    receivers[item.is_async].append(r)
        return receivers

    # -- Django's attributes ---------------------------------------------------------

    @property
    def receivers(self) -> list[ReceiverEntry]:
        """The connections, in Django 6's layout ``(lookup_key, receiver, sender_ref, is_async)``.

        ``receiver`` is a weak reference for weak connections. Assigning a list
        to the attribute replaces the signal's connections. Changing the list
        in place (as some Django add-ons do) writes it back too, as long as
        the signal has not changed since the list was read; after that the
        list is detached, like Django's once the signal has replaced it.
        """
        with self.lock:
            purged = self._clear_dead_receivers()
            rows = [_row(key, entry) for key, entry in self._registry.items()]
            version = self._version
        del purged  # only now: a receiver's __del__ may use this signal
        return _ReceiverList(self, rows, version)

    @receivers.setter
    def receivers(self, rows: Iterable[Sequence[Any]]) -> None:
        registry: dict[Hashable, Any] = {}
        for row in rows:
            item = self._adopt_row(row)
            if item is not None:
                registry.setdefault(*item)
        with self.lock:
            old = self._registry
            self._registry = registry
            self._senders = _count_senders(registry)
            self._dead_receivers = False
            self._invalidate()
        del old  # only now: a receiver's __del__ may use this signal

    def _adopt_row(self, row: Sequence[Any]) -> tuple[Hashable, Any] | None:
        """Turn a Django-layout row (6.0+ 4-tuple, or <=5.2 3-tuple) into a registry item.

        Weak references are remade with this signal's callback (rows may come
        from another signal, or from code that built them by hand), so that
        the connection goes when its receiver or sender dies. A row whose
        receiver or sender is already dead is dropped.
        """
        if len(row) == 4:
            lookup_key, ref, sender_ref, receiver_is_async = row
        elif len(row) == 3:
            lookup_key, ref, receiver_is_async = row
            sender_ref = None
        else:
            raise ValueError(
                "Signal.receivers rows are (lookup_key, receiver, sender_ref, is_async); "
                f"got {row!r}"
            )
        identity, sender_key = lookup_key
        weak = isinstance(ref, weakref.ref)
        if weak:
            receiver = ref()
            if receiver is None:
                return None
            watched = diagnostics.watched_by(ref)
            if watched is not None:  # keep the lost-receiver diagnostic's watch
                ref = weakref.ref(receiver, watched.rewatch(self._on_dead))
            else:
                ref = self._weak_ref(receiver)
        if sender_ref is not None:
            sender = sender_ref()
            if sender is None:
                return None
            sender_ref = weakref.ref(sender, self._on_dead)
        key: Hashable = identity if sender_key == NONE_ID else (_SENDER, identity, sender_key)
        later, priority = _NOW, 0
        if type(row) is _ExtendedRow:
            later, priority = getattr(row, "on_commit", _NOW), getattr(row, "priority", 0)
        if (
            weak
            and type(ref) is weakref.ref
            and sender_key == NONE_ID
            and not receiver_is_async
            and not later
            and not priority
        ):
            return key, ref
        return key, _Connection(
            ref, weak, sender_key, sender_ref, bool(receiver_is_async), later, priority
        )

    @property
    def sender_receivers_cache(self) -> dict[Hashable, Plan]:
        """The per-sender plan cache; ``clear()`` it freely, as Django code does."""
        return self._plans

    @sender_receivers_cache.setter
    def sender_receivers_cache(self, value: object) -> None:
        # Test fixtures save the cache and assign it back. Plans are rebuilt
        # from the registry on demand, so the value itself is not needed.
        with self.lock:
            self._drop_plans()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}>"


def _live(derefs: Iterable[Deref]) -> list[Any]:
    return [r for r in [d() for d in derefs] if r is not None]


@contextlib.contextmanager
def _dropped_on_failure(deferred: list[tuple[Any, Any]]) -> Iterator[None]:
    """A send that raises calls none of its on-commit receivers either: the
    calls it already handed to the transaction are dropped."""
    try:
        yield
    except BaseException:
        for _receiver, call in deferred:
            call.drop()
        raise


def _slow_derefs(slow: _Slow) -> Iterator[Deref]:
    yield from slow.async_
    for item in slow.later:
        yield item.deref


def _priority(entry: Any) -> int:
    return entry.priority if type(entry) is _Connection else 0


def _check_priority(priority: object) -> None:
    if type(priority) is not int:
        raise TypeError(
            f"priority must be an int (higher runs first, 0 by default); got {priority!r}."
        )


def _on_commit_mode(on_commit: object, robust: object) -> int:
    if not isinstance(on_commit, bool):
        raise TypeError(f"on_commit must be True or False; got {on_commit!r}.")
    if robust is not None and not isinstance(robust, bool):
        raise TypeError(f"robust must be True or False; got {robust!r}.")
    if not on_commit:
        raise TypeError(
            "robust= applies only to on_commit=True receivers; to catch the errors "
            "of ordinary receivers, send with send_robust()."
        )
    return _ON_COMMIT_RAISE if robust is False else _ON_COMMIT_ROBUST


def _row(key: Hashable, entry: Any) -> ReceiverEntry:
    if type(entry) is not _Connection:
        return ReceiverEntry((key, NONE_ID), entry, None, False)
    identity = key[1] if type(key) is tuple and key and key[0] is _SENDER else key
    fields = ((identity, entry.sender_key), entry.ref, entry.sender_ref, entry.is_async)
    if not entry.on_commit and not entry.priority:
        return ReceiverEntry(*fields)
    row = _ExtendedRow(*fields)
    row.on_commit, row.priority = entry.on_commit, entry.priority
    return row


def _count_senders(registry: dict[Hashable, Any]) -> dict[Hashable, int]:
    """Sender key -> how many connections in *registry* are restricted to it."""
    counts: dict[Hashable, int] = {}
    for key in registry:
        if type(key) is tuple and key and key[0] is _SENDER:
            counts[key[2]] = counts.get(key[2], 0) + 1
    return counts


class _ReceiverList(list[ReceiverEntry]):
    """``Signal.receivers``: a list whose in-place changes are written back."""

    def __init__(self, signal: Signal, rows: Iterable[ReceiverEntry], version: int) -> None:
        super().__init__(rows)
        self._signal = signal
        self._version = version

    def _write_back(self) -> None:
        signal = self._signal
        # A list read before the signal last changed is a stale copy (a
        # saved "paused" list, say): writing it back would undo that change.
        with signal.lock:
            if self._version == signal._version:
                signal.receivers = self
                self._version = signal._version

    def append(self, row: ReceiverEntry) -> None:
        super().append(row)
        self._write_back()

    def extend(self, rows: Iterable[ReceiverEntry]) -> None:
        super().extend(rows)
        self._write_back()

    def insert(self, index: SupportsIndex, row: ReceiverEntry) -> None:
        super().insert(index, row)
        self._write_back()

    def remove(self, row: ReceiverEntry) -> None:
        super().remove(row)
        self._write_back()

    def pop(self, index: SupportsIndex = -1) -> ReceiverEntry:
        row = super().pop(index)
        self._write_back()
        return row

    def clear(self) -> None:
        super().clear()
        self._write_back()

    def reverse(self) -> None:
        super().reverse()
        self._write_back()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._write_back()

    @overload
    def __setitem__(self, index: SupportsIndex, value: ReceiverEntry) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[ReceiverEntry]) -> None: ...
    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._write_back()

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        super().__delitem__(index)
        self._write_back()

    def __iadd__(self, rows: Iterable[ReceiverEntry]) -> _ReceiverList:  # type: ignore[override,misc]
        super().__iadd__(rows)
        self._write_back()
        return self


# For type checkers: @receiver(typed_signal) checks the function against the
# signal's arguments (see tocsin.typed); any other signal, or a list, is not.
# The first overload wins for a TypedSignal, which is a Signal too; both spell
# out connect()'s options, so that a wrong one is an error rather than a
# silent fall back to the unchecked overload.
@overload
def receiver(  # type: ignore[overload-overlap]
    signal: TypedSignal[_P],
    *,
    sender: object = ...,
    weak: bool = ...,
    dispatch_uid: Hashable = ...,
    on_commit: bool = ...,
    robust: bool | None = ...,
    priority: int = ...,
) -> ReceiverDecorator[_P]: ...
@overload
def receiver(
    signal: Signal | Sequence[Signal],
    *,
    sender: object = ...,
    weak: bool = ...,
    dispatch_uid: Hashable = ...,
    on_commit: bool = ...,
    robust: bool | None = ...,
    priority: int = ...,
) -> Callable[[R], R]: ...
def receiver(signal: Signal | Sequence[Signal], **kwargs: Any) -> Callable[[R], R]:
    """Decorator that connects the decorated function to one or more signals.

    ``kwargs`` are passed to :meth:`Signal.connect`; the function is returned
    unchanged::

        @receiver(post_save, sender=Todo)
        def on_save(sender, **kwargs): ...

        @receiver([post_save, post_delete], sender=Todo)
        def on_change(sender, **kwargs): ...
    """

    def each(signals: Signal | Sequence[Signal]) -> list[Signal]:
        found: list[Signal] = list(signals) if isinstance(signals, (list, tuple)) else [signals]  # type: ignore[list-item]
        for s in found:
            if not hasattr(s, "connect"):
                raise TypeError(
                    f"receiver() takes a signal or a list or tuple of signals; "
                    f"got {type(s).__name__} {s!r}."
                )
        return found

    each(signal)  # fail at the decorator line, not at the function below it

    def decorator(func: R) -> R:
        # Read the list again, as Django does: it may have grown since.
        for s in each(signal):
            s.connect(func, **kwargs)
        return func

    return decorator
