"""The URLs of the panel's tests: views that send, and django-debug-toolbar's own
(imported by the URL resolver only, once the toolbar is an installed app)."""

from __future__ import annotations

from typing import Any

from django.urls import include, path

from .toolbar_views import (
    check_in_transaction,
    create_shelf,
    roll_back,
    send_async,
    send_many,
)

urlpatterns: list[Any] = [
    path("shelves/", create_shelf),
    path("rollback/", roll_back),
    path("many/", send_many),
    path("async/", send_async),
    path("check/", check_in_transaction),
    path("__debug__/", include("debug_toolbar.urls")),
]
