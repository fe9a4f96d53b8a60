"""tocsin's pytest plugin, registered through the ``pytest11`` entry point.

Fixtures over :mod:`tocsin.testing`, each a factory whose helpers end at the
test's teardown, the last one started first::

    def test_saving_sends_post_save(signal_capture, signal_muted, signal_connected):
        signal_muted(post_delete)                        # tocsin.testing.muted
        sent = signal_capture(post_save, sender=Todo)    # tocsin.testing.capture
        spy = signal_connected(Mock(), pre_save)         # tocsin.testing.connected_to
        ...
        sent.assert_sent_once_with(instance=ANY, created=True, ...)

=====================  ==========================================================
``signal_capture``     ``signal_capture(signal, sender=None, *, local=False)``
                       starts a :func:`tocsin.testing.capture` and returns the
                       :class:`~tocsin.testing.Capture` (:class:`SignalCaptureFactory`)
``signal_muted``       ``signal_muted(*signals, local=False)``:
                       :func:`tocsin.testing.muted` (:class:`SignalMutedFactory`)
``signal_connected``   ``signal_connected(receiver, signal, sender=None, *,
                       local=False, weak=True, dispatch_uid=None, on_commit=False,
                       robust=None, priority=0)`` returns the receiver:
                       :func:`tocsin.testing.connected_to` (:class:`SignalConnectedFactory`)
=====================  ==========================================================

The factories' types are ``typing.Protocol`` classes, to annotate a test's
parameters with.

And, off by default, a check that a test leaves every signal's receivers as it
found them: ``tocsin_registry_check = true`` in the pytest configuration turns
it on for every test, ``@pytest.mark.tocsin_registry_check`` (or ``(True)``, or
``(enabled=True)``) for some, and ``@pytest.mark.tocsin_registry_check(False)``
off for some. A test that changes them (connected, disconnected, or connected
differently, compared with before its function-scoped fixtures ran), and whose
function-scoped fixtures do not put them back, errors at teardown with a line
per signal saying what changed. A marker argument that is not a ``bool``
raises ``TypeError``. ``tocsin_registry_check_ignore``, a list of ``fnmatch``
patterns of receiver names (``module.qualname``), leaves some receivers out
of the check: ``django.*`` in a Django project, whose test client moves
Django's ``close_old_connections`` to the end of ``request_finished`` on every
request, and whose storages connect to ``setting_changed`` when first used.

This module is imported by every pytest run of every project that installs
tocsin, so it imports :mod:`tocsin.testing` only when a fixture is used (the
``tocsin`` package itself is imported, as any submodule import does).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from tocsin import Signal
    from tocsin.testing import Capture

__all__ = ["SignalCaptureFactory", "SignalConnectedFactory", "SignalMutedFactory"]

R = TypeVar("R", bound=Callable[..., Any])

_CHECK = "tocsin_registry_check"
_IGNORE = "tocsin_registry_check_ignore"


class SignalCaptureFactory(Protocol):
    """The ``signal_capture`` fixture: ``signal_capture(signal, sender=None, *, local=False)``."""

    def __call__(self, signal: Signal, sender: object = None, *, local: bool = False) -> Capture:
        """Start a :class:`tocsin.testing.Capture`, stopped at teardown."""
        ...


class SignalMutedFactory(Protocol):
    """The ``signal_muted`` fixture: ``signal_muted(*signals, local=False)``."""

    def __call__(self, *signals: Signal, local: bool = False) -> None:
        """Mute *signals* until teardown (:func:`tocsin.testing.muted`)."""
        ...


class SignalConnectedFactory(Protocol):
    """The ``signal_connected`` fixture:
    ``signal_connected(receiver, signal, sender=None, ...)``."""

    def __call__(
        self,
        receiver: R,
        signal: Signal,
        sender: object = None,
        *,
        local: bool = False,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        on_commit: bool = False,
        robust: bool | None = None,
        priority: int = 0,
    ) -> R:
        """Connect *receiver* until teardown (:func:`tocsin.testing.connected_to`)."""
        ...


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _CHECK,
        type="bool",
        default=False,
        help="tocsin: fail (error at teardown) every test that leaves a signal's receivers "
        "changed; @pytest.mark.tocsin_registry_check(False) exempts a test.",
    )
    parser.addini(
        _IGNORE,
        type="linelist",
        default=[],
        help="tocsin: receivers (fnmatch patterns of module.qualname, such as django.*) "
        "whose connections the registry check leaves out.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_CHECK}(enabled=True): error at teardown if the test leaves a tocsin signal's "
        f"receivers changed (False exempts a test when the {_CHECK} ini option is on).",
    )


@pytest.fixture
def _tocsin_exit_stack() -> Iterator[ExitStack]:
    """Where the factories' helpers go: one stack, so they end in reverse order
    of start whichever factory started them."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def signal_capture(_tocsin_exit_stack: ExitStack) -> SignalCaptureFactory:
    """A factory of :class:`tocsin.testing.Capture`: ``sent = signal_capture(post_save)``
    records the sends of ``post_save`` until the end of the test."""
    from tocsin.testing import Capture

    def factory(signal: Signal, sender: object = None, *, local: bool = False) -> Capture:
        return _tocsin_exit_stack.enter_context(Capture(signal, sender, local=local))

    return factory


@pytest.fixture
def signal_muted(_tocsin_exit_stack: ExitStack) -> SignalMutedFactory:
    """``signal_muted(post_save, ...)`` mutes signals until the end of the test
    (:func:`tocsin.testing.muted`)."""
    from tocsin.testing import muted

    def factory(*signals: Signal, local: bool = False) -> None:
        _tocsin_exit_stack.enter_context(muted(*signals, local=local))

    return factory


@pytest.fixture
def signal_connected(_tocsin_exit_stack: ExitStack) -> SignalConnectedFactory:
    """``signal_connected(receiver, signal, sender=None, ...)`` connects a receiver
    until the end of the test and returns it (:func:`tocsin.testing.connected_to`)."""
    from tocsin.testing import connected_to

    def factory(
        receiver: R,
        signal: Signal,
        sender: object = None,
        *,
        local: bool = False,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        on_commit: bool = False,
        robust: bool | None = None,
        priority: int = 0,
    ) -> R:
        block = connected_to(
            receiver,
            signal,
            sender,
            local=local,
            weak=weak,
            dispatch_uid=dispatch_uid,
            on_commit=on_commit,
            robust=robust,
            priority=priority,
        )
        return _tocsin_exit_stack.enter_context(block)

    return factory


@pytest.fixture(autouse=True)
def _tocsin_registry_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """The opt-in check that a test leaves the signals' receivers as it found them.

    Function-scoped and autouse, so it starts after the fixtures of wider scope
    (which may connect receivers for many tests) and ends after the test's own.
    """
    if not _check_enabled(request):
        yield
        return
    from tocsin.testing import _Snapshot

    before = _Snapshot(ignore=request.config.getini(_IGNORE))
    yield
    changes = before.changes()
    if changes:
        pytest.fail(
            "the test left signal receivers changed (tocsin_registry_check):\n"
            + "\n".join(f"  {line}" for line in changes),
            pytrace=False,
        )


def _check_enabled(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker(_CHECK)
    if marker is None:
        return bool(request.config.getini(_CHECK))
    enabled = marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
    if not isinstance(enabled, bool):
        raise TypeError(
            f"@pytest.mark.{_CHECK} takes True or False (True if left out); got {enabled!r}."
        )
    return enabled
