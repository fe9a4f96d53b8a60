"""A django-debug-toolbar panel of the signals a request **sent**.

The toolbar's own ``SignalsPanel`` lists who is connected to some of Django's
signals; it can stay beside this one. ``SentSignalsPanel`` lists every send
the request made, in order, of every signal (Django's, the apps', tocsin's):
its sender, each receiver it called with its time and its exception, and the
on-commit receivers it deferred, with what became of them (run after the
commit, failed, or dropped by a rollback). It records through
:mod:`tocsin.tracing`, only while the request runs and only the request's
own sends::

    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "tocsin.contrib.django.panels.SentSignalsPanel",
    ]

with ``"tocsin.contrib.django"`` in ``INSTALLED_APPS`` (the panel's template is
in it). Needs django-debug-toolbar: ``pip install django-debug-toolbar``.
"""

from __future__ import annotations

import inspect
from typing import Any

try:
    from debug_toolbar.panels import Panel
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tocsin.contrib.django.panels is a django-debug-toolbar panel: "
        "pip install django-debug-toolbar (and add it to INSTALLED_APPS)."
    ) from _error

from django.http import HttpRequest, HttpResponse

from ._recorder import Limits, Recorder

__all__ = ["SentSignalsPanel"]


class SentSignalsPanel(Panel):
    """Every signal the request sent, with its receivers and its deferred on-commit calls.

    What one request records is bounded by three class attributes; subclass
    the panel to change them (and list the subclass in
    ``DEBUG_TOOLBAR_PANELS``). The panel says how many sends and calls it
    left out. Sends made before the toolbar's middleware runs
    (``request_started``) or after the response is returned
    (``request_finished``) are not the request's to see.
    """

    title = "Signals sent"
    template = "tocsin/panels/signals.html"
    is_async = True

    max_sends: int = 200
    """Sends recorded per request; later ones are counted, not shown."""
    max_receivers: int = 50
    """Receivers (and deferred calls) shown per send; the others are counted."""
    max_text: int = 200
    """Characters kept of a sender's ``repr()`` or an exception's message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = Limits(sends=self.max_sends, receivers=self.max_receivers, text=self.max_text)
        self._recorder = Recorder(limits)

    @property
    def nav_subtitle(self) -> str:
        """The side bar's line: how many sends and receiver calls the request made."""
        stats = self.get_stats()  # type: ignore[no-untyped-call]  # the toolbar's
        sends = len(stats.get("sends", ())) + stats.get("sends_omitted", 0)
        calls = stats.get("receiver_calls", 0)
        return f"{sends} send{'s' * (sends != 1)}, {calls} receiver call{'s' * (calls != 1)}"

    def process_request(self, request: HttpRequest) -> Any:
        """Record the sends made while the rest of the request runs (for an async
        request, while its response is awaited)."""
        with self._recorder.recording():
            response = super().process_request(request)  # type: ignore[no-untyped-call]
        if inspect.isawaitable(response):  # an async request: nothing has run yet
            return self._recorder.arecording(response)
        return response

    def generate_stats(self, request: HttpRequest, response: HttpResponse) -> None:
        """Store the record, once the request's deferred calls have run or not."""
        self.record_stats(self._recorder.finish())  # type: ignore[no-untyped-call]
