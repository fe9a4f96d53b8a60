"""The app config: ``"tocsin.contrib.django"`` in ``INSTALLED_APPS`` installs tocsin."""

from __future__ import annotations

from types import ModuleType

from django.apps import AppConfig

from ._install import install

__all__ = ["TocsinConfig"]


class TocsinConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    """Calls :func:`tocsin.contrib.django.install` as soon as Django creates it.

    ``django.setup()`` creates the app configs first, in ``INSTALLED_APPS``
    order, importing each app's package; it imports the models modules after
    that, and calls the ``ready()`` methods last. Installing from ``ready()``
    would come after every models module has run: a receiver connected there
    with tocsin's options (``on_commit=True``) would meet Django's
    ``connect()``, which refuses them. Listed first, this app installs before
    any other app's code runs.
    """

    name = "tocsin.contrib.django"
    label = "tocsin"
    verbose_name = "tocsin"

    def __init__(self, app_name: str, app_module: ModuleType | None) -> None:
        super().__init__(app_name, app_module)
        install()
