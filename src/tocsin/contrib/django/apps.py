"""The app config: ``"tocsin.contrib.django"`` in ``INSTALLED_APPS`` installs tocsin."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from ._install import install

if TYPE_CHECKING:

    class AppConfig:
        """What this module uses of ``django.apps.AppConfig``, for type checkers:
        Django ships no type hints, and a base class of unknown type would leave
        ``TocsinConfig`` untyped."""

        def __init__(self, app_name: str, app_module: ModuleType | None) -> None: ...

else:
    from django.apps import AppConfig

__all__ = ["TocsinConfig"]


class TocsinConfig(AppConfig):
    """Calls :func:`tocsin.contrib.django.install` as soon as Django creates it.

    ``django.setup()`` creates the app configs first, in ``INSTALLED_APPS``
    order, importing each app's package; it imports the models modules after
    that, and calls the ``ready()`` methods last. Installing from ``ready()``
    would come after every models module has run: a receiver connected there
    with tocsin's options (``on_commit=True``) would meet Django's
    ``connect()``, which refuses them. Listed first, this app installs before
    any other app's code runs.
    """

    name: str = "tocsin.contrib.django"
    label: str = "tocsin"
    verbose_name: str = "tocsin"

    def __init__(self, app_name: str, app_module: ModuleType | None) -> None:
        super().__init__(app_name, app_module)
        install()
