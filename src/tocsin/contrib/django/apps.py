"""The app config: ``"tocsin.contrib.django"`` in ``INSTALLED_APPS`` installs tocsin."""

from __future__ import annotations

from django.apps import AppConfig

from ._install import install


class TocsinConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    """Calls :func:`tocsin.contrib.django.install` from ``ready()``.

    Django calls ``ready()`` once every app's models are imported, in
    ``INSTALLED_APPS`` order, before any request or command runs.
    """

    name = "tocsin.contrib.django"
    label = "tocsin"
    verbose_name = "tocsin"

    def ready(self) -> None:
        install()
