"""The Todo example's URLs: the list, the admin, and the toolbar's when it is on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns: list[Any] = [
    path("", include("todos.urls")),
    path("admin/", admin.site.urls),
]

if settings.TOOLBAR:
    # Not debug_toolbar_urls(): it adds nothing while DEBUG is off, as in tests.
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
