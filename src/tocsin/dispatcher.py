"""``Signal`` and ``receiver``: Django's dispatcher, rebuilt for speed and safety.

How it is laid out (see docs/how-it-works.md for the long walk-through):

* ``_registry`` is a dict from lookup key to connection, in connection order
  (see :mod:`tocsin._connection`). Looking a key up makes duplicate detection
  and ``disconnect()`` O(1), where Django scans a list. ``receivers``, Django's
  list of rows, is computed from it (see :mod:`tocsin._django_rows`).
* A *plan* is what ``send()`` needs for one sender: a tuple of derefs for the
  sync receivers, and the rest (async and on-commit receivers, and installed
  hooks) in a :class:`_Slow`, built under the lock from the registry the
  first time it is needed and cached until the registry or the hooks change.
  ``send()`` itself takes no lock and never scans the registry.
* :mod:`tocsin.hooks` is the one extension point: a hook changes a send's
  plan or observes it. While none is installed, sends never look for one.
* Weak-reference callbacks only flag the signal dirty and drop the cached
  plans; the dead entries are purged under the lock by the next connect,
  disconnect or plan build (a callback can run during garbage collection
  while this very thread is half-way through changing the registry).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from types import FunctionType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from . import diagnostics, hooks, oncommit
from ._compiled import speedups
from ._connection import SENDER, Connection, count_senders, identity_of, is_dead, priority_of
from ._django_rows import ReceiverEntry, ReceiverList, read_row, row_of
from ._inspect import check_receiver, describe, is_bound_method
from ._log import logger
from ._options import ON_COMMIT_ROBUST, ConnectOptions, Options, read_options
from ._refs import NONE_ID, Deref, WeakMethodRef, deref_for, make_id
from .hooks import Later, Plan, SendHook, SendInfo, SendObserver

if TYPE_CHECKING:
    from typing import ParamSpec, Unpack

    from .typed import ReceiverDecorator, TypedSignal

    _P = ParamSpec("_P")

__all__ = [
    "ConnectOptions",
    "ConnectionInfo",
    "ReceiverEntry",
    "Signal",
    "all_signals",
    "receiver",
]

R = TypeVar("R", bound=Callable[..., Any])


class _Slow(NamedTuple):
    """What makes a send leave the all-sync fast path: async receivers,
    on-commit receivers, or installed hooks (see :mod:`tocsin.hooks`)."""

    async_: tuple[Deref, ...]
    later: tuple[Later, ...]
    hooks: tuple[SendHook, ...] = ()
    # Those of *hooks* that override SendHook.plan (asked on every send).
    planners: tuple[SendHook, ...] = ()


# A plan is what send() needs for one sender: (sync derefs, _Slow or ()).
# It stays a bare 2-tuple because send() unpacks it on every call, and only
# an exact tuple takes the interpreter's fast unpacking path. A plan with no
# receiver (and no hook) is _NO_PLAN, (), so that send() with nobody
# listening returns after one test; () in the second place keeps the all-sync
# send to one more test. Outside this module, plans are hooks.Plan.
_Plan = tuple[tuple[Deref, ...], _Slow | tuple[()]]
_NO_PLAN: tuple[()] = ()
_EMPTY: _Plan = ((), ())


class ConnectionInfo(NamedTuple):
    """One live connection, as :meth:`Signal.connections` lists it (a named tuple).

    A row holds its receiver and sender strongly: keep rows only as long as you
    need them.
    """

    identity: Hashable
    """Django's receiver identity (``id(receiver)``, or ``(id(obj), id(func))`` for
    a bound method), or the ``dispatch_uid`` if one was given."""
    receiver: Callable[..., Any]
    """The receiver itself."""
    sender: object
    """The sender the receiver is restricted to; None for any sender (or a
    sender that cannot be weakly referenced: see ``sender_key``)."""
    sender_key: Hashable
    """The sender's key, made as the receiver's identity is, or ``id(None)`` for any
    sender."""
    any_sender: bool
    """Whether it was connected for every sender."""
    weak: bool
    """Whether the signal holds the receiver through a weak reference."""
    is_async: bool
    """Whether the receiver is async."""
    on_commit: bool
    """Whether it was connected with ``on_commit=True``."""
    robust: bool
    """For an on-commit receiver, whether its failures are logged (True) or raised
    (False); False for the others."""
    priority: int
    """Its priority, as connected (0 by default)."""


# Every Signal alive, for tocsin.introspect, the command line, and hooks
# installed on every signal.
_every_signal: weakref.WeakSet[Signal] = weakref.WeakSet()
# A WeakSet cannot be copied while another thread adds to it.
_every_signal_lock = threading.Lock()


def all_signals() -> list[Signal]:
    """Every Signal alive (typed ones included), named or not, in no particular order.

    :mod:`tocsin.introspect` re-exports it beside the functions that name them.
    A Django signal that :func:`tocsin.contrib.django.uninstall` gave back to
    ``django.dispatch`` is no longer a Signal, and is left out.
    """
    with _every_signal_lock:
        return [signal for signal in _every_signal if isinstance(signal, Signal)]


class Signal:
    """A signal that receivers connect to and senders send, as ``django.dispatch.Signal``.

    :param use_caching: accepted for compatibility with Django, where it
        turns on a per-sender cache. tocsin always caches, safely: the cache
        also works for ``None`` and for senders that cannot be weakly
        referenced, which Django's rejects with ``TypeError``. The value
        changes nothing; it is kept as the :attr:`use_caching` attribute.
    :raises TypeError: if *use_caching* is not True or False. A string gets a
        message of its own: ``Signal("payment_received")`` is a habit from
        libraries whose signals have names, and Django would silently take the
        name as a true *use_caching*; tocsin's signals have no name (assign the
        signal to a variable).

    The attributes :attr:`receivers`, :attr:`lock`, :attr:`sender_receivers_cache`
    and :attr:`use_caching` exist because Django add-ons read and write them;
    new code should not need them.
    """

    sync_receivers_on_loop: bool = False
    """Set it to True (``request_started.sync_receivers_on_loop = True``) to have
    :meth:`asend` and :meth:`asend_robust` call this signal's sync receivers
    directly, on the event loop's thread, instead of in a worker thread. A
    departure from Django, which always hops to a thread: it saves the hop
    (tens of microseconds) for receivers known to be quick and never to block,
    and such receivers then see the caller's context variables, as async
    receivers do. :meth:`send` is unchanged.

    .. versionadded:: Unreleased
    """

    def __init__(self, use_caching: bool = False) -> None:
        _check_use_caching(use_caching)
        self.use_caching = use_caching
        """The value given to ``Signal()``. It changes nothing."""
        with _every_signal_lock:
            _every_signal.add(self)
        # Reentrant, unlike Django's Lock: code that holds ``signal.lock``
        # (as some Django add-ons do) may still read or assign ``receivers``.
        self.lock: threading.RLock = threading.RLock()
        """The ``threading.RLock`` that guards the signal's connections.

        Django's is a plain ``Lock``; code that only uses it in a ``with`` block
        cannot tell the difference. It is held while a connection is added or
        removed, while the receivers of a sender are looked up for the first
        time, while :attr:`receivers` is read or assigned, and while
        :attr:`sender_receivers_cache` is assigned; never while receivers run, so
        receivers may connect, disconnect and send freely.
        """
        self._registry: dict[Hashable, Any] = {}
        # Sender key -> number of connections restricted to that sender.
        # While it is empty, send() skips the per-sender lookup entirely.
        self._senders: dict[Hashable, int] = {}
        # The plan for every sender, while no connection is sender-filtered;
        # None when not built yet or when some connection is.
        self._any_plan: _Plan | tuple[()] | None = None
        # Plans of the senders in _senders, keyed by their sender key (id(),
        # or Django's (id(self), id(func)) for a bound method), plus the plan
        # of every other sender under NONE_ID. Only keys of senders that have
        # connections are cached, so that a dead sender's id() reused by a
        # new object can never find a stale plan. Exposed under Django's name
        # so that code calling ``sender_receivers_cache.clear()`` keeps working.
        self._plans: dict[Hashable, _Plan | tuple[()]] = {}
        # Bumped on every change of the registry; see ReceiverList.
        self._version = 0
        self._dead_receivers = False
        # One bound method shared by every weak reference this signal makes.
        self._on_dead = self._flag_dead_receivers

    # -- registration --------------------------------------------------------------

    def connect(
        self,
        receiver: R,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        **options: Unpack[ConnectOptions],
    ) -> R:
        """Connect *receiver* so that it is called when this signal is sent.

        :param receiver: a callable that accepts ``**kwargs``: a function, a
            bound method, a ``functools.partial`` or a callable object, sync
            or async. It is called as ``receiver(signal=signal, sender=sender,
            **named)``. An ``async def`` function, an object whose class defines
            ``async def __call__``, and a ``functools.partial`` of either are
            async receivers. Checked now, not when the signal is first sent.
        :param sender: receive only what this object sends, compared by
            identity (a bound method by its object and function, as in Django,
            so ``obj.method`` matches itself each time); ``None`` receives from
            every sender.
        :param weak: hold *receiver* through a weak reference, so that
            connecting it does not keep it alive; it is disconnected when it is
            garbage collected. Lambdas, closures and partials that nothing else
            references vanish at once: connect them with ``weak=False``.
        :param dispatch_uid: a hashable value that identifies the connection
            instead of the receiver. As in Django, a false value (``None``,
            ``0``, ``""``) counts as none given.
        :param options: tocsin's own, keyword-only, declared once as the
            ``TypedDict`` :class:`ConnectOptions` (type checkers check each
            one's name and type; at run time an unknown one raises
            ``TypeError`` listing the valid ones). ``on_commit=True``: a send
            inside a transaction does not call *receiver* but defers it until
            that transaction commits, and drops it if it rolls back; its
            response in the send's result is a :class:`~tocsin.oncommit.Deferred`.
            Outside any transaction it is called at once, after the send's
            other receivers (docs/after-commit.md). ``robust=`` (with
            ``on_commit=True``): a failure after the commit is logged to the
            ``tocsin`` logger, as ``Error calling <receiver> in on_commit()
            (<error>)`` (True, the default), or raised from the code that
            commits, once every deferred call has run (False). ``priority=``
            (an ``int``, 0 by default, negative too): receivers with a higher
            priority are called first, equal priorities keep connection order,
            so a program that never passes it gets Django's order. It orders
            the receivers within each kind: sync receivers still come before
            async ones, and on-commit receivers last
            (docs/priority-and-diagnostics.md).
        :returns: *receiver*, so that ``@signal.connect`` also works as a
            decorator (Django returns None; nothing reads it).
        :raises TypeError: before anything is connected, if *receiver* is not
            callable, if *weak* is true and *receiver* cannot be weakly
            referenced, if *dispatch_uid* is not hashable, if an option is
            unknown, if ``on_commit`` or ``robust`` is not a ``bool``, if
            ``robust`` is given without ``on_commit=True``, or if ``priority``
            is not an ``int`` (``True`` and ``False`` included).
        :raises ValueError: if *receiver* does not accept ``**kwargs``.

        A connection is identified by its receiver (or *dispatch_uid*) and its
        sender. Connecting again with the same identity is ignored: the first
        connection keeps its place and its *weak* and *priority* settings (to
        change them, disconnect it and connect it again). The order is worked
        out once per sender, when the signal builds its list of receivers, so
        a send pays nothing for it.

        If *sender* can be weakly referenced, the connection goes away when the
        sender is garbage collected, so a new object that happens to get the
        same ``id()`` does not inherit it. Senders that cannot be weakly
        referenced (ints, strings, tuples...) are matched by ``id()`` alone, as
        in Django. As in Django too, a bound method made just for the call
        (``sender=obj.method``) is collected at once and takes the connection
        with it: keep a reference to the method.

        Where Django refuses too, the error message begins with Django's own
        text, word for word, so that code and tests matching on it keep
        working, then names the receiver and the fix: ``Signal receivers must
        be callable.``, ``Signal receivers must accept keyword arguments
        (**kwargs).``, and Python's ``cannot create weak reference to '...'
        object``.
        """
        receiver_is_async = check_receiver(receiver)
        later, priority = read_options(options) if options else _DEFAULT_OPTIONS
        # The common case (a function, for any sender, weakly) makes no call
        # of a helper: connect() and disconnect() run in loops at start-up and
        # in tests that connect per test.
        function = type(receiver) is FunctionType
        key: Hashable
        if sender is None and not dispatch_uid:
            key = id(receiver) if function else make_id(receiver)
        else:
            key = self._lookup_key(receiver, sender, dispatch_uid)
        ref: Any = receiver
        if weak:
            if function and not diagnostics._switch.on:
                ref = weakref.ref(receiver, self._on_dead)
            else:
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
            entry = Connection(
                ref, bool(weak), sender_key, sender_ref, receiver_is_async, later, priority
            )
        replaced = None
        with self.lock:
            purged = self._clear_dead_receivers() if self._dead_receivers else None
            existing = self._registry.get(key)
            if existing is not None and is_dead(existing):
                # Dead, but not flagged yet (its weakref callback has not run,
                # or reports elsewhere): the new connection takes its place.
                replaced = self._remove(key)
                existing = None
            if existing is None:
                self._registry[key] = entry
                if sender is not None:
                    self._count_sender(key, +1)
                self._any_plan = None  # self._invalidate(), inline
                self._plans.clear()
                self._version += 1
        del purged, replaced  # only now: a receiver's __del__ may use this signal
        return receiver

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable = None,
    ) -> bool:
        """Disconnect *receiver* (or the receiver connected with *dispatch_uid*).

        :param receiver: the receiver to disconnect; not needed when
            *dispatch_uid* is given.
        :param sender: the sender given to ``connect()``. It must match:
            ``disconnect(r)`` does not remove ``connect(r, sender=A)``.
        :param dispatch_uid: the ``dispatch_uid`` given to ``connect()``.
        :returns: True if a connection was removed, False if there was none.
        :raises TypeError: if neither *receiver* nor *dispatch_uid* is given, or
            if *dispatch_uid* is not hashable.

        Weakly connected receivers need not be disconnected: they go when they
        are garbage collected.
        """
        if receiver is None and not dispatch_uid:
            raise TypeError(
                "disconnect() needs the receiver to disconnect, or the dispatch_uid "
                "it was connected with."
            )
        key: Hashable
        if sender is None and not dispatch_uid:  # the common case: no helper's call
            key = id(receiver) if type(receiver) is FunctionType else make_id(receiver)
        else:
            key = self._lookup_key(receiver, sender, dispatch_uid)
        with self.lock:
            purged = self._clear_dead_receivers() if self._dead_receivers else None
            entry = self._registry.pop(key, None)  # self._remove(key), inline
            if entry is None:
                return False
            if type(key) is tuple:
                self._count_sender(key, -1)
            self._any_plan = None  # self._invalidate(), inline
            self._plans.clear()
            self._version += 1
        del purged, entry  # only now: a receiver's __del__ may use this signal
        return True

    def has_listeners(self, sender: object = None) -> bool:
        """Whether sending from *sender* would call at least one receiver that is
        still alive.

        With the default ``sender=None`` only receivers connected for any
        sender count (as sending with ``sender=None`` would reach only them),
        as in Django.
        """
        sync, slow = self._planned(self._receivers_of(sender), sender)
        for deref in sync:
            if deref() is not None:
                return True
        if not slow:
            return False
        return any(deref() is not None for deref in _slow_derefs(slow))

    # -- for integrations -----------------------------------------------------------

    def would_send(self, sender: object) -> bool:
        """Whether a send from *sender* would do anything: some receiver is
        connected for it (or for any sender), or a hook is installed
        (:mod:`tocsin.hooks`; a tracer hears of every send, also of one that
        reaches no receiver).

        Cheap (a cached lookup; receivers are not dereferenced, so one that
        died a moment ago may still count: :meth:`has_listeners` gives the
        exact answer): for integrations that skip building costly arguments
        when nothing would happen, as the SQLAlchemy integration does before
        it builds a model signal's.
        """
        return bool(self._cached_plan(sender))

    def would_send_any(self) -> bool:
        """Whether a send from some sender would do anything: any connection, for
        any sender, or an installed hook (see :meth:`would_send`)."""
        return bool(self._registry) or bool(hooks.installed(self))

    def send_with_awaiter(
        self, await_: Callable[[Awaitable[Any]], Any], sender: object, /, **named: Any
    ) -> list[tuple[Any, Any]]:
        """:meth:`send`, for code that runs on an event loop's thread but
        cannot ``await``: *await_* waits for the async receivers from there.

        *await_* is a function that takes an awaitable, waits for it, and
        returns its result; the async receivers are run with it, instead of on
        a private event loop, and the running-loop check of :meth:`send` is
        skipped. Everything else (the order, the responses, on-commit
        receivers, hooks, which see it as a ``"send"``) is :meth:`send`'s.
        SQLAlchemy's ``AsyncSession`` runs the ORM in a greenlet on the loop's
        thread, where ``send()`` refuses async receivers; its ``await_`` can
        wait for them. *await_* and *sender* are positional-only, so that a
        signal's own arguments may have any name, ``await_`` included.
        """
        plan = self._receivers_of(sender)
        if plan[1]:
            return self._send_slow(sender, named, plan, "send", await_)
        return self._call_all(_live(plan[0]), sender, named)

    def connections(self) -> list[ConnectionInfo]:
        """The live connections, in the order a send calls them, as a list of
        :class:`ConnectionInfo`.

        That is by priority (highest first, then in connection order), sync
        receivers before async ones, and on-commit receivers last. A
        connection restricted to one sender is listed too, although only that
        sender's sends call it. The signal is not changed: connections whose
        receiver or sender has died are left out, even if the signal has not
        purged them yet. It is what :func:`tocsin.introspect.receivers` and the
        ``tocsin list`` command read: the public way to see a signal's
        connections without reading Django's :attr:`receivers` rows.
        """
        with self.lock:
            items = list(self._registry.items())
        # A stable sort, as in _build_plan: equal priorities keep connection order.
        items.sort(key=lambda item: priority_of(item[1]), reverse=True)
        now: list[ConnectionInfo] = []
        async_: list[ConnectionInfo] = []
        later: list[ConnectionInfo] = []
        for key, entry in items:
            info = _connection_info(key, entry)
            if info is not None:
                (later if info.on_commit else async_ if info.is_async else now).append(info)
        return now + async_ + later

    # -- sending -------------------------------------------------------------------

    # One frame between the caller and a sync receiver, as in Django: Django's own
    # receivers compute warnings' stacklevel from it (setting_changed's, say).
    def send(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:  # noqa: PLR0911
        """Call every receiver of *sender* and return ``[(receiver, response), ...]``.

        :param sender: who sends: any object, ``None`` included. Receivers
            connected for this sender (by identity) and those connected for any
            sender are called.
        :param named: passed to every receiver, after ``signal=`` and ``sender=``.
        :raises AsyncReceiversInLoopError: before any receiver is called, if
            async receivers are connected and the calling thread's event loop
            is running (``send()`` would have to block it to wait for them):
            use ``await signal.asend()`` there.

        The sync receivers are called first, one after the other, by priority
        and then in connection order, as ``receiver(signal=self, sender=sender,
        **named)``. An exception raised by a receiver propagates at once and
        the remaining receivers are not called (use :meth:`send_robust` to call
        them all).

        Then the async receivers run concurrently (as in :meth:`asend`) and
        ``send()`` waits for them; their responses follow those of the sync
        receivers, in the same order. If one fails, its exception is raised;
        if several fail, an ``ExceptionGroup`` of them, in the order they
        failed. From sync code they run, when asgiref is installed (it is
        wherever Django is), through ``asgiref.sync.async_to_sync``, so that
        code running under ``sync_to_async`` sends to them on the application's
        event loop; without asgiref, in a new event loop in the calling thread.

        Which receivers are called is settled when ``send()`` starts: a
        receiver disconnected by an earlier receiver during this send is still
        called, and one connected during it is called from the next send.

        The response of an on-commit receiver that the send deferred to a
        transaction is a :class:`~tocsin.oncommit.Deferred`; these come last.
        An on-commit receiver called at once (no transaction) is called after
        the other sync receivers, or with the async ones if it is async.
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
            return self._send_slow(sender, named, plan, "send")
        if len(sync) == 1:  # the most common case, without building a snapshot list
            receiver = sync[0]()
            if receiver is None:
                return []
            return [(receiver, receiver(signal=self, sender=sender, **named))]
        # Dereference every receiver before calling any, so that what a
        # receiver does to the others cannot change this send.
        receivers = [deref() for deref in sync]
        if "signal" in named:  # let Python raise its TypeError, as Django's call does
            return self._call_all(filter(None, receivers), sender, named)
        # The keyword arguments merged once, not once per receiver (a quarter
        # of a send to ten receivers); each call still gets a dict of its own.
        arguments = {"signal": self, "sender": sender, **named}
        responses = []
        for receiver in receivers:
            if receiver is not None:
                responses.append((receiver, receiver(**arguments)))
        return responses

    def send_robust(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Like :meth:`send`, but an ``Exception`` raised by a receiver is caught.

        The exception (with its ``__traceback__``) takes the place of that
        receiver's response, is logged with its traceback to the ``tocsin``
        logger, and the remaining receivers are still called, sync or async.
        ``BaseException``\\ s such as ``KeyboardInterrupt`` still propagate.

        Each failure is logged at level ``ERROR`` as ``Error calling <receiver>
        in Signal.send_robust() (<error>)``, where ``<receiver>`` is the
        receiver's ``__qualname__``, or for objects without one (a partial, a
        callable object) a description such as ``functools.partial(shop.charge)``.

        :raises AsyncReceiversInLoopError: in the same case as :meth:`send`.
        """
        plan = self._cached_plan(sender)
        if not plan:  # nobody listens (nor hooks)
            return []
        if plan[1]:
            return self._send_slow(sender, named, plan, "send_robust")
        return self._call_robust(_live(plan[0]), sender, named)

    async def asend(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Send from async code: a coroutine, with :meth:`send`'s arguments and
        return value.

        1. The sync receivers are called first, all of them in one call made
           off the event loop, so that they cannot block it: through asgiref's
           ``sync_to_async`` when asgiref is installed (as Django does),
           otherwise in a worker thread that tocsin starts once and reuses
           (unless :attr:`sync_receivers_on_loop` is set: then directly). If
           one raises, the exception propagates and no async receiver is run.
        2. Then every async receiver is called, by priority and then in
           connection order, before any of them runs (for an ``async def``
           receiver, calling it only makes its coroutine). If one of these calls
           raises, no async receiver runs: the coroutines already made are
           closed and the exception propagates.
        3. Then they run concurrently, each started before any is waited for,
           but a task is made only for receivers that wait. They run one after
           the other in the caller's task, for as long as none suspends: a
           send to receivers that never wait makes no task (and no trip
           through the event loop). The first receiver that suspends goes on
           in the caller's task, to its end; each receiver after it runs in an
           ``asyncio`` task of its own (on Python 3.12+ created with
           ``eager_start=True``, so that one that does not wait finishes at
           once; on 3.11 they start on the loop's next pass). So inside a
           receiver, ``asyncio.current_task()`` is the caller's task or the
           receiver's own, and stays the same before and after it waits:
           ``asyncio.timeout()``, a ``TaskGroup`` or an anyio cancel scope in
           a receiver acts on that receiver alone. (Django gives every receiver
           a task of its own from its first line.)

        An async receiver may return any awaitable (a coroutine, a future, an
        object with ``__await__``). If one fails, the ones still running are
        cancelled; once all have stopped, a single failure is raised as it is
        and several together as an ``ExceptionGroup`` (message ``unhandled
        errors in a TaskGroup``), in the order they failed, as an
        ``asyncio.TaskGroup`` would. If the task awaiting ``asend()`` is
        cancelled, the receivers are cancelled too, and waited for, before the
        cancellation propagates. A receiver cancelled from inside, without
        failing, gets None as its response. One departure from Django: the
        first receiver that waits runs in the caller's task, as if awaited
        directly, so if it catches the caller's cancellation and returns,
        ``asend()`` goes on (the cancellation is not propagated, nor are the
        other receivers cancelled).

        The async receivers share one copy of the caller's ``contextvars``
        context, and the values they set are copied back into the caller's
        context when they are done (as in Django 6.1).
        """
        plan = self._cached_plan(sender)
        if not plan:  # nobody listens (nor hooks): as Django, at once
            return []
        sync, slow = plan
        if slow and not sync and not slow.later and not slow.hooks:
            # The common async case: only async receivers, nothing deferred or hooked.
            receivers = [r for deref in slow.async_ if (r := deref()) is not None]
            responses = _async().start_concurrently(receivers, self, sender, named)
            if type(responses) is not list:  # a receiver waits
                responses = await responses
            return responses  # type: ignore[no-any-return]
        return await self._asend(plan, sender, named, "asend")

    async def asend_robust(self, sender: object, **named: Any) -> list[tuple[Any, Any]]:
        """Send from async code, catching exceptions: :meth:`asend` with the error
        handling of :meth:`send_robust`.

        Every ``Exception`` raised by a receiver becomes its response and is
        logged; none propagates. Each async receiver is called in its turn
        (in the caller's task, or in its own once an earlier one waited), so a
        receiver whose call raises is handled like one whose coroutine raises.
        """
        plan = self._cached_plan(sender)
        if not plan:  # nobody listens (nor hooks)
            return []
        return await self._asend(plan, sender, named, "asend_robust")

    async def _asend(
        self, plan: _Plan, sender: object, named: dict[str, Any], method: hooks.Method
    ) -> list[tuple[Any, Any]]:
        robust = method == "asend_robust"
        if plan[1] and plan[1].hooks:
            plan, observers = self._hooked(plan, sender, named, method)
            if observers:
                with _observing(observers):
                    responses = await self._asend_plan(plan, sender, named, robust, observers)
                return _unwrapped(responses)
        return await self._asend_plan(plan, sender, named, robust, ())

    async def _asend_plan(
        self,
        plan: _Plan,
        sender: object,
        named: dict[str, Any],
        robust: bool,
        observers: tuple[SendObserver, ...],
    ) -> list[tuple[Any, Any]]:
        sync_receivers, async_receivers, deferred = self._gather(plan, sender, named, observers)
        responses: list[tuple[Any, Any]] = []
        with _dropped_on_failure(deferred):
            if sync_receivers:
                call = self._call_robust if robust else self._call_all
                if self.sync_receivers_on_loop:
                    responses = call(sync_receivers, sender, named)
                else:
                    responses = await _async().run_sync_off_loop(
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
        # Merged once, as in send(); per call when named has "signal", so that
        # each call raises Python's TypeError, the receiver's response here.
        arguments = None if "signal" in named else {"signal": self, "sender": sender, **named}
        responses = []
        for receiver in receivers:
            try:
                if arguments is None:
                    response = receiver(signal=self, sender=sender, **named)
                else:
                    response = receiver(**arguments)
            except Exception as err:
                self._log_robust_failure(receiver, err)
                response = err
            responses.append((receiver, response))
        return responses

    async def _run_async(
        self, receivers: Sequence[Any], sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Any, Any]]:
        on_error = self._robust_failure if robust else None
        responses: list[tuple[Any, Any]]
        responses = await _async().run_concurrently(receivers, self, sender, named, on_error)
        return responses

    def _send_slow(
        self,
        sender: object,
        named: dict[str, Any],
        plan: _Plan,
        method: hooks.Method,
        await_: Callable[[Awaitable[Any]], Any] | None = None,
    ) -> list[tuple[Any, Any]]:
        """A sync send when async or on-commit receivers, or hooks, are in the plan.

        *await_* is how to wait for the async receivers: by default on a
        private loop (or asgiref's), which needs this thread to be outside a
        running loop (see :meth:`send_with_awaiter`).
        """
        robust = method == "send_robust"
        slow = plan[1]
        assert slow  # the callers test it: this is the slow path
        if slow.hooks:
            plan, observers = self._hooked(plan, sender, named, method)
            if observers:
                with _observing(observers):
                    responses = self._send_plan(sender, named, plan, robust, await_, observers)
                return _unwrapped(responses)
        return self._send_plan(sender, named, plan, robust, await_, ())

    def _send_plan(
        self,
        sender: object,
        named: dict[str, Any],
        plan: _Plan,
        robust: bool,
        await_: Callable[[Awaitable[Any]], Any] | None,
        observers: tuple[SendObserver, ...],
    ) -> list[tuple[Any, Any]]:
        sync_receivers, async_receivers, deferred = self._gather(plan, sender, named, observers)
        with _dropped_on_failure(deferred):
            if async_receivers and await_ is None:
                method = "send_robust()" if robust else "send()"
                _async().check_no_running_loop(f"Signal.{method}")
            if robust:
                responses = self._call_robust(sync_receivers, sender, named)
            else:
                responses = self._call_all(sync_receivers, sender, named)
            if async_receivers:

                def make() -> Awaitable[list[tuple[Any, Any]]]:
                    return self._run_async(async_receivers, sender, named, robust)

                responses.extend(
                    await_(make()) if await_ is not None else _async().run_from_sync(make)
                )
        responses.extend(deferred)
        return responses

    def _gather(
        self,
        plan: _Plan,
        sender: object,
        named: dict[str, Any],
        observers: tuple[SendObserver, ...],
    ) -> tuple[list[Any], list[Any], list[tuple[Any, Any]]]:
        """The live sync and async receivers a send calls now (wrapped for
        the *observers*, if any), and the ``(receiver, Deferred)`` responses
        of those it defers."""
        sync, slow = plan
        sync_receivers = _live(sync)
        async_receivers: list[Any] = []
        deferred: list[tuple[Any, Any]] = []
        if slow:
            async_receivers = _live(slow.async_)
            if slow.later:
                deferred = self._defer(
                    slow.later, sender, named, sync_receivers, async_receivers, observers
                )
        if observers:
            sync_receivers = [_Observed(r, observers) for r in sync_receivers]
            async_receivers = [_ObservedAsync(r, observers) for r in async_receivers]
        return sync_receivers, async_receivers, deferred

    def _defer(
        self,
        later: tuple[Later, ...],
        sender: object,
        named: dict[str, Any],
        sync_receivers: list[Any],
        async_receivers: list[Any],
        observers: tuple[SendObserver, ...],
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
                call = oncommit.Deferred(self, receiver, sender, named, item.robust)
                if scope.defer(call):
                    for observer in observers:
                        observer.deferred(receiver, call)
                    responses.append((receiver, call))
                    continue
            (async_receivers if item.is_async else sync_receivers).append(receiver)
        return responses

    def _log_robust_failure(self, receiver: Any, err: Exception) -> None:
        # Django's message, word for word, but a receiver without a
        # __qualname__ (a partial, a callable object) is named, not fatal.
        if type(receiver) in _OBSERVED:
            receiver = receiver.receiver
        name = getattr(receiver, "__qualname__", None)
        logger().error(
            "Error calling %s in Signal.send_robust() (%s)",
            name if isinstance(name, str) else describe(receiver),
            err,
            exc_info=err,
        )

    def _robust_failure(self, receiver: Any, err: Exception) -> Exception:
        self._log_robust_failure(receiver, err)
        return err

    # -- hooks ---------------------------------------------------------------------

    def _hooked(
        self, plan: _Plan, sender: object, named: dict[str, Any], method: hooks.Method
    ) -> tuple[_Plan, tuple[SendObserver, ...]]:
        """A hooked send's plan after the plan hooks, and its observers."""
        slow = plan[1]
        assert slow
        plan = self._planned(plan, sender)
        info = SendInfo(self, sender, named, method)
        observers = tuple(
            observer for hook in slow.hooks if (observer := hook.observe(info)) is not None
        )
        return plan, observers

    def _planned(self, plan: _Plan, sender: object) -> _Plan:
        """*plan* as the plan hooks change it for this send (in this context)."""
        slow = plan[1]
        if not slow or not slow.planners:
            return plan
        view = Plan(plan[0], slow.async_, slow.later)
        for hook in slow.planners:
            view = hook.plan(self, sender, view)
            if type(view) is not Plan:
                raise TypeError(
                    f"{describe(hook)}.plan() must return a tocsin.hooks.Plan; "
                    f"got {type(view).__name__}."
                )
        sync, async_, later = view
        if async_ or later:
            return tuple(sync), _Slow(tuple(async_), tuple(later), slow.hooks)
        return tuple(sync), _Slow((), (), slow.hooks) if slow.hooks else ()

    def _hooks_changed(self) -> None:
        with self.lock:
            self._drop_plans()

    # -- plans ---------------------------------------------------------------------

    def _receivers_of(self, sender: object) -> _Plan:
        """The ``(sync, slow)`` plan for *sender*, () made ((), ())."""
        return self._cached_plan(sender) or _EMPTY

    def _cached_plan(self, sender: object) -> _Plan | tuple[()]:
        """The plan for *sender*, or _NO_PLAN; what send() inlines."""
        plan = self._any_plan
        if plan is None:
            plan = self._plans.get(id(sender)) if self._senders else None
            if plan is None:
                plan = self._plan(sender)
        return plan

    def _plan(self, sender: object) -> _Plan | tuple[()]:
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

    def _build_plan(self, sender_key: Hashable) -> _Plan | tuple[()]:
        # Caller holds self.lock.
        sync: list[Deref] = []
        async_: list[Deref] = []
        later: list[Later] = []
        entries: Iterable[Any] = self._registry.values()
        if any(type(e) is Connection and e.priority for e in entries):
            # A stable sort: equal priorities keep connection order.
            entries = sorted(entries, key=priority_of, reverse=True)
        for entry in entries:
            if type(entry) is not Connection:
                sync.append(entry)
                continue
            if entry.sender_key not in (NONE_ID, sender_key):
                continue
            deref = deref_for(entry.ref, entry.weak)
            if entry.on_commit:
                later.append(Later(deref, entry.is_async, entry.on_commit == ON_COMMIT_ROBUST))
            else:
                (async_ if entry.is_async else sync).append(deref)
        installed = hooks.installed(self)
        if installed:
            planners = tuple(h for h in installed if type(h).plan is not SendHook.plan)
            return tuple(sync), _Slow(tuple(async_), tuple(later), installed, planners)
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
        if type(key) is not tuple or not key or key[0] is not SENDER:
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
        self._registry = {k: e for k, e in old.items() if not is_dead(e)}
        self._senders = count_senders(self._registry)
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
        return (SENDER, identity, make_id(sender))

    def _weak_ref(self, receiver: Callable[..., Any], *, watch: bool = False) -> Any:
        try:
            if is_bound_method(receiver):
                return WeakMethodRef(receiver, self._on_dead)
            if watch and diagnostics._switch.on and diagnostics.ephemeral(receiver):
                return weakref.ref(receiver, diagnostics.watch(receiver, self._on_dead))
            return weakref.ref(receiver, self._on_dead)
        except TypeError as err:
            # Python's message first, as Django raises it unchanged.
            raise TypeError(
                f"{err}: receiver {describe(receiver)} cannot be weakly referenced; "
                f"connect it with weak=False."
            ) from None

    def _live_receivers(self, sender: object) -> tuple[list[Any], list[Any]]:
        """The live ``(sync, async)`` receivers of *sender*, as in Django 5.0+.

        Kept for code written against Django's private method. tocsin's own
        ``send()`` does not call it, so patching it does not observe sends
        (:mod:`tocsin.hooks` does).
        """
        sync, slow = self._planned(self._receivers_of(sender), sender)
        receivers = _live(sync), _live(slow.async_) if slow else []
        if slow:
            for item in slow.later:  # on-commit receivers are receivers too
                if (r := item.deref()) is not None:
                    receivers[item.is_async].append(r)
        return receivers

    # -- Django's attributes (rows in Django's layout: see tocsin._django_rows) ------

    @property
    def receivers(self) -> list[ReceiverEntry]:
        """The connections, in Django 6's layout ``(lookup_key, receiver, sender_ref, is_async)``.

        A list of named tuples (:class:`ReceiverEntry`), in connection order:

        * ``lookup_key``: ``(identity, sender_key)``. ``identity`` is the
          ``dispatch_uid``, or else ``id()`` of the receiver (``(id(obj),
          id(func))`` for a bound method); ``sender_key`` is the sender's, made
          the same way, or ``id(None)`` for any sender.
        * ``receiver``: the receiver itself if connected with ``weak=False``,
          otherwise a weak reference to it (a ``weakref.WeakMethod`` for a
          bound method).
        * ``sender_ref``: a weak reference to the sender, or None for any
          sender and for senders that cannot be weakly referenced.
        * ``is_async``: whether the receiver is async.

        The row of a connection made with ``on_commit=True`` or a priority
        other than 0 is such a 4-tuple too, of a subclass that also records
        those settings (also through the row's ``_replace()``): assigned back
        as it is, it keeps them (a row rebuilt as a plain tuple makes an
        ordinary connection). Connections whose receiver or sender has been
        garbage collected are left out (reading the attribute purges them).

        Each read returns a new list, a snapshot. While the signal has not
        changed since the list was read, changing the list in place
        (``append``, ``remove``, ``clear``, ``rows[i] = ...``, ``sort``...)
        replaces the signal's connections with its new content, as some Django
        add-ons expect. Once the signal has changed (a connection, a
        disconnection, an assignment, the purge of a receiver or sender that
        died), the list is detached: changing it changes only the list, so a
        saved list cannot undo later connections.

        Assigning a list (or any iterable of rows) replaces the connections at
        any time, as factory_boy's ``mute_signals()`` does. Rows may also use
        Django 5.2's 3-tuple layout, ``(lookup_key, receiver, is_async)``. Of
        rows with the same ``lookup_key``, the first is kept, so a receiver is
        never called twice through a restored list; rows whose receiver or
        sender has been garbage collected are left out; a row of another length
        raises ``ValueError``. The next send uses the new connections.

        Reading or assigning it takes :attr:`lock`, which is reentrant. New code
        should use :meth:`connections` to read, and ``connect()`` to change.
        """
        with self.lock:
            purged = self._clear_dead_receivers()
            rows = [row_of(key, entry) for key, entry in self._registry.items()]
            version = self._version
        del purged  # only now: a receiver's __del__ may use this signal
        return ReceiverList(rows, version, self._write_back)

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
            self._senders = count_senders(registry)
            self._dead_receivers = False
            self._invalidate()
        del old  # only now: a receiver's __del__ may use this signal

    def _write_back(self, rows: ReceiverList, version: int) -> int | None:
        """A ``receivers`` list changed in place: assign it back, unless the
        signal changed since it was read. Returns the new version, or None."""
        with self.lock:
            if version != self._version:
                return None
            self.receivers = rows
            return self._version

    def _adopt_row(self, row: Sequence[Any]) -> tuple[Hashable, Any] | None:
        """Turn a Django-layout row into a registry item.

        Weak references are remade with this signal's callback (rows may come
        from another signal, or from code that built them by hand), so that
        the connection goes when its receiver or sender dies. A row whose
        receiver or sender is already dead is dropped.
        """
        parts = read_row(row)
        ref, sender_ref = parts.ref, parts.sender_ref
        if parts.weak:
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
        any_sender = parts.sender_key == NONE_ID
        key: Hashable = parts.identity if any_sender else (SENDER, parts.identity, parts.sender_key)
        if (
            parts.weak
            and type(ref) is weakref.ref
            and any_sender
            and not parts.is_async
            and not parts.on_commit
            and not parts.priority
        ):
            return key, ref
        return key, Connection(
            ref,
            parts.weak,
            parts.sender_key,
            sender_ref,
            parts.is_async,
            parts.on_commit,
            parts.priority,
        )

    @property
    def sender_receivers_cache(self) -> dict[Hashable, Any]:
        """tocsin's cache of who receives what, per sender, kept whatever
        ``use_caching`` says.

        Its content is private. Calling ``clear()`` on it is always safe, as
        Django add-ons do after changing :attr:`receivers` (tocsin does not need
        it: the cache is dropped on every change). Assigning to the attribute,
        as test fixtures that save the cache and restore it do, is safe too:
        the value is ignored and the cache is dropped.
        """
        return self._plans

    @sender_receivers_cache.setter
    def sender_receivers_cache(self, value: object) -> None:
        # Test fixtures save the cache and assign it back. Plans are rebuilt
        # from the registry on demand, so the value itself is not needed.
        with self.lock:
            self._drop_plans()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}>"


_DEFAULT_OPTIONS = Options()


def _send_frame(call: Callable[[], list[tuple[Any, Any]]]) -> list[tuple[Any, Any]]:
    # The compiled send calls its receivers from here, so that a receiver is
    # one frame below the line that sent, as in Django and the pure send().
    return call()


if speedups is not None:
    # Named as the frame it stands for, in tracebacks and in inspect.stack().
    _send_frame.__code__ = _send_frame.__code__.replace(co_name="send", co_qualname="Signal.send")
    # The pure send() stays the reference: the compiled one calls it for
    # everything but the two commonest cases (see tocsin/_speedups.c).
    Signal.send = speedups.SendMethod(Signal.send, _send_frame)  # type: ignore[method-assign]
    Signal.would_send = speedups.WouldSendMethod(Signal.would_send)  # type: ignore[method-assign]


@functools.cache
def _async() -> Any:
    """tocsin._async, imported on first use: it imports asyncio, which
    ``import tocsin`` must not pay for (most programs never send async)."""
    from . import _async as module

    return module


def _check_use_caching(value: object) -> None:
    if type(value) is bool:
        return
    if isinstance(value, str):
        raise TypeError(
            f"Signal() takes use_caching (a bool) as its first argument, not a name; "
            f"got {value!r}. Signals have no name: assign the signal to a variable "
            f"(order_placed = Signal())."
        )
    raise TypeError(f"use_caching must be True or False; got {value!r}.")


def _on_hooks_changed(signal: Signal | None) -> None:
    for each in [signal] if signal is not None else all_signals():
        if isinstance(each, Signal):  # see all_signals()
            each._hooks_changed()


hooks.set_listener(_on_hooks_changed)


def _live(derefs: Iterable[Deref]) -> list[Any]:
    return [r for r in [d() for d in derefs] if r is not None]


def _connection_info(key: Hashable, entry: Any) -> ConnectionInfo | None:
    """The info of one registry entry, or None if its receiver or sender has died."""
    if type(entry) is not Connection:  # a bare weak reference: the common case
        entry = Connection(entry, True, NONE_ID, None, False)
    receiver = entry.ref() if entry.weak else entry.ref
    if receiver is None:
        return None
    sender = entry.sender_ref() if entry.sender_ref is not None else None
    if entry.sender_ref is not None and sender is None:
        return None
    return ConnectionInfo(
        identity=identity_of(key),
        receiver=receiver,
        sender=sender,
        sender_key=entry.sender_key,
        any_sender=entry.sender_key == NONE_ID,
        weak=entry.weak,
        is_async=entry.is_async,
        on_commit=bool(entry.on_commit),
        robust=entry.on_commit == ON_COMMIT_ROBUST,
        priority=entry.priority,
    )


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


# -- observed receivers (a hooked send with observers) ------------------------------------


class _Observed:
    """A receiver, called through the observers of one send."""

    __slots__ = ("observers", "receiver")

    def __init__(self, receiver: Callable[..., Any], observers: tuple[SendObserver, ...]) -> None:
        self.receiver = receiver
        self.observers = observers

    def __call__(self, **named: Any) -> Any:
        receiver = self.receiver
        call: Callable[[], Any] = functools.partial(receiver, **named)
        for observer in reversed(self.observers):  # the first installed is outermost
            call = functools.partial(observer.call, receiver, call)
        return call()


class _ObservedAsync(_Observed):
    __slots__ = ()

    async def __call__(self, **named: Any) -> Any:
        receiver = self.receiver
        call: Callable[[], Awaitable[Any]] = functools.partial(receiver, **named)
        for observer in reversed(self.observers):
            call = functools.partial(observer.acall, receiver, call)
        return await call()


_OBSERVED = (_Observed, _ObservedAsync)


def _unwrapped(responses: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(r.receiver if type(r) in _OBSERVED else r, response) for r, response in responses]


@contextlib.contextmanager
def _observing(observers: tuple[SendObserver, ...]) -> Iterator[None]:
    """Enter the observers around a send (the first outermost) and exit them
    after it, every one, even if another's ``__exit__`` raised. Unlike an
    ExitStack, an observer cannot swallow the send's exception; an exception
    raised by an observer propagates, as a receiver's would."""
    entered: list[SendObserver] = []
    try:
        for observer in observers:
            observer.__enter__()
            entered.append(observer)
        yield
    except BaseException as err:
        _exit_all(entered, err)
        raise
    _exit_all(entered, None)


def _exit_all(entered: list[SendObserver], error: BaseException | None) -> None:
    failure: BaseException | None = None
    for observer in reversed(entered):
        try:
            if error is None:
                observer.__exit__(None, None, None)
            else:
                observer.__exit__(type(error), error, error.__traceback__)
        except BaseException as err:
            failure = failure or err
    if failure is not None:
        raise failure


# For type checkers: @receiver(typed_signal) checks the function against the
# signal's arguments (see tocsin.typed); any other signal, or a list, is not.
# The first overload wins for a TypedSignal, which is a Signal too; both take
# connect()'s options (ConnectOptions), so that a wrong one is an error rather
# than a silent fall back to the unchecked overload.
@overload
def receiver(  # type: ignore[overload-overlap]
    signal: TypedSignal[_P],
    *,
    sender: object = ...,
    weak: bool = ...,
    dispatch_uid: Hashable = ...,
    **options: Unpack[ConnectOptions],
) -> ReceiverDecorator[_P]: ...
@overload
def receiver(
    signal: Signal | Sequence[Signal],
    *,
    sender: object = ...,
    weak: bool = ...,
    dispatch_uid: Hashable = ...,
    **options: Unpack[ConnectOptions],
) -> Callable[[R], R]: ...
def receiver(signal: Signal | Sequence[Signal], **kwargs: Any) -> Callable[[R], R]:
    """Decorator that connects the decorated function to one or more signals.

    ``kwargs`` are passed to :meth:`Signal.connect`; the function is returned
    unchanged::

        @receiver(post_save, sender=Todo)
        def on_save(sender, **kwargs): ...

        @receiver([post_save, post_delete], sender=Todo)
        def on_change(sender, **kwargs): ...

    :param signal: a :class:`Signal`, or a list or tuple of signals to connect
        to each. As in Django, a list is read when the function is decorated,
        so signals appended to it in between are connected too.
    :param kwargs: ``connect()``'s: ``sender``, ``weak``, ``dispatch_uid``,
        ``on_commit``, ``robust``, ``priority``. They are typed for type
        checkers, so a misspelt option is an error there.
    :raises TypeError: when ``receiver()`` is called, before decorating, if
        *signal*, or an item of the list, has no ``connect`` method; and
        whatever ``connect()`` raises, when decorating.

    With a :class:`~tocsin.typed.TypedSignal` (not with a list), type checkers
    check the decorated function against the signal's arguments; for them it
    then has the signal's signature.
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
