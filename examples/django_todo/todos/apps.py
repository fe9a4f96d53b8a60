"""The todos app's config: its receivers are connected when the app is ready."""

from __future__ import annotations

from django.apps import AppConfig


class TodosConfig(AppConfig):
    name = "todos"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  # connects them
