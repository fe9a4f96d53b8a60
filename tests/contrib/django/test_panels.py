"""The django-debug-toolbar panel: the signals a request sent, rendered as the toolbar
renders a panel (a request through its middleware, then its render_panel view)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("debug_toolbar")

from django.conf import settings
from django.db.models.signals import post_save
from django.test import AsyncClient, Client, override_settings

from tocsin import tracing
from tocsin.contrib.django._recorder import Limits
from tocsin.contrib.django.panels import SentSignalsPanel

from .models import Shelf
from .toolbar_views import shelf_checked

URLS = "contrib.django.toolbar_urls"
indexed: list[str] = []


def index_shelf(sender: Any, instance: Shelf, **kwargs: Any) -> str:
    indexed.append(instance.name)
    return "indexed"


def count_shelf(sender: Any, **kwargs: Any) -> None:
    pass


def check_shelf(sender: Any, **kwargs: Any) -> None:
    raise ValueError("x" * 300)


class SmallPanel(SentSignalsPanel):
    max_sends = 3
    max_text = 40


@pytest.fixture
def toolbar(project_apps: None, tables: None) -> Iterator[None]:
    """A project with the toolbar's middleware, its URLs and two signals panels."""
    # Three blocks: Django installs the apps before it changes the other settings,
    # the toolbar's app reads STATIC_URL when it is ready, and the toolbar's
    # settings need its app installed.
    with (
        override_settings(
            DEBUG=True,
            STATIC_URL="/static/",
            ROOT_URLCONF=URLS,
            MIDDLEWARE=["debug_toolbar.middleware.DebugToolbarMiddleware"],
            TEMPLATES=[
                {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
            ],
        ),
        override_settings(
            INSTALLED_APPS=[
                *settings.INSTALLED_APPS,
                "django.contrib.staticfiles",
                "debug_toolbar",
            ]
        ),
        override_settings(
            DEBUG_TOOLBAR_PANELS=[
                "tocsin.contrib.django.panels.SentSignalsPanel",
                f"{__name__}.SmallPanel",
            ],
            DEBUG_TOOLBAR_CONFIG={
                "SHOW_TOOLBAR_CALLBACK": "contrib.django.toolbar_views.show_toolbar",
                "IS_RUNNING_TESTS": False,
            },
        ),
    ):
        post_save.connect(count_shelf, sender=Shelf)
        post_save.connect(index_shelf, sender=Shelf, on_commit=True)
        shelf_checked.connect(check_shelf)
        try:
            yield
        finally:
            post_save.disconnect(count_shelf, sender=Shelf)
            post_save.disconnect(index_shelf, sender=Shelf)
            shelf_checked.disconnect(check_shelf)
            Shelf.objects.all().delete()
            indexed.clear()


def panel(path: str, panel_id: str = "SentSignalsPanel") -> str:
    """The panel's HTML for a request to *path*, as the toolbar's page fetches it."""
    from debug_toolbar.store import get_store  # its models need the app installed

    client = Client()
    response = client.get(path)
    assert response.status_code == 200
    assert b"djDebug" in response.content  # the toolbar is on the page
    request_id = list(get_store().request_ids())[-1]
    rendered = client.get(
        "/__debug__/render_panel/", {"request_id": request_id, "panel_id": panel_id}
    )
    return html.unescape(rendered.json()["content"])


def text(content: str) -> str:
    """The panel's text, one space between words (none before a colon)."""
    return " ".join(re.sub(r"<[^>]+>", " ", content).split()).replace(" :", ":")


def test_lists_the_sends_in_order_with_receivers_and_deferred_calls(toolbar: None) -> None:
    content = text(panel("/shelves/"))
    sends = [m.group(1) for m in re.finditer(r"\d+ ([\w.]+) send(?:_robust)?\(", content)]
    # pre_init, post_init (no receivers, still sent), pre_save, post_save; then the app's
    assert sends[-3:] == [
        "django.db.models.signals.pre_save",
        "django.db.models.signals.post_save",
        "contrib.django.toolbar_views.shelf_checked",
    ]
    post_save_row = content[content.index("signals.post_save send(") :]
    assert post_save_row.startswith(
        "signals.post_save send(created, instance, raw, update_fields, using)"
    )
    assert "contrib.django.test_panels.count_shelf" in post_save_row
    assert "contrib.django.test_panels.index_shelf: ran after the commit" in post_save_row
    assert indexed == ["kitchen"]
    robust = content[content.index("shelf_checked send_robust(shelf)") :]
    assert "contrib.django.test_panels.check_shelf" in robust
    assert "raised ValueError: xxx" in robust
    assert "x" * 200 not in robust  # cut at max_text
    assert "…" in robust


def test_a_rolled_back_call_is_shown_dropped(toolbar: None) -> None:
    content = text(panel("/rollback/"))
    assert "index_shelf: dropped: its transaction rolled back" in content
    assert indexed == []


def report_shelf(sender: Any, **kwargs: Any) -> None:
    raise ConnectionError("the printer is offline")


def test_a_failed_call_after_the_commit_is_shown(toolbar: None) -> None:
    """A robust on-commit receiver that raises after the commit: logged, and shown."""
    shelf_checked.disconnect(check_shelf)
    shelf_checked.connect(report_shelf, on_commit=True)
    try:
        content = text(panel("/check/"))
    finally:
        shelf_checked.disconnect(report_shelf)
        shelf_checked.connect(check_shelf)
    assert "contrib.django.test_panels.report_shelf: failed after the commit" in content
    assert "raised ConnectionError: the printer is offline" in content


def test_what_one_request_records_is_bounded(toolbar: None) -> None:
    content = text(panel("/many/?count=10", "SmallPanel"))
    assert content.count("shelf_checked send_robust(shelf)") == 3
    assert "7 more sends not shown: the panel records the first 3 of a request." in content
    assert "raised ValueError: xxxxx" in content
    assert "x" * 40 not in content


def test_the_side_bar_counts_the_sends_and_calls(toolbar: None) -> None:
    page = Client().get("/many/?count=10").content.decode()
    assert "10 sends, 10 receiver calls" in page  # the full panel
    assert "10 sends, 3 receiver calls" in page  # the small one saw 3 sends' calls


def test_an_async_request_is_recorded_in_its_task(toolbar: None) -> None:
    """Through Django's ASGI handler and the toolbar's async middleware."""
    from debug_toolbar.store import get_store

    async def get() -> int:
        response = await AsyncClient().get("/async/")
        return int(response.status_code)

    assert asyncio.run(get()) == 200
    request_id = list(get_store().request_ids())[-1]
    rendered = Client().get(
        "/__debug__/render_panel/", {"request_id": request_id, "panel_id": "SentSignalsPanel"}
    )
    content = text(html.unescape(rendered.json()["content"]))
    assert "shelf_checked asend_robust(shelf)" in content
    assert "contrib.django.test_panels.check_shelf" in content
    assert not tracing.tracing_active()


def test_records_only_while_the_request_runs(toolbar: None) -> None:
    """The panel's tracer is subscribed for the request only, and another
    thread's sends (here: the test's, after it) are not the request's."""
    panel("/shelves/")
    assert not tracing.tracing_active()
    content = text(panel("/many/?count=0"))
    assert "The request sent no signal." in content


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"sends": 0}, ValueError),
        ({"receivers": "5"}, TypeError),
        ({"text": True}, TypeError),
    ],
)
def test_limits_are_checked(limits: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        Limits(**limits)


def test_without_the_toolbar_the_import_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "tocsin.contrib.django.panels")
    monkeypatch.setitem(sys.modules, "debug_toolbar.panels", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install django-debug-toolbar"):
        importlib.import_module("tocsin.contrib.django.panels")
