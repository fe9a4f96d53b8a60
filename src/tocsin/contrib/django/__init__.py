"""Every Django signal on tocsin: ``django.dispatch``, Django's own signals and
third-party apps', with one line of settings::

    INSTALLED_APPS = [
        "tocsin.contrib.django",  # first, so that it is ready before the others
        ...
    ]

or, without the app, :func:`install` at start-up. Each ``django.dispatch.Signal``
(``post_save``, ``request_finished``, ``user_logged_in``, an app's own...)
then dispatches with tocsin's methods, keeping its receivers; connections take
tocsin's options (``on_commit``, ``robust``, ``priority``), and on-commit
receivers wait for ``django.db.transaction``. docs/django.md has the details.
Needs the ``django`` extra: ``pip install 'tocsin[django]'``.
"""

from __future__ import annotations

try:
    import django as _django
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tocsin.contrib.django needs Django 5.2 or newer: pip install 'tocsin[django]'"
    ) from _error

if _django.VERSION < (5, 2):  # pragma: no cover - depends on the environment
    raise ImportError(
        f"tocsin.contrib.django needs Django 5.2 or newer; {_django.get_version()} is installed."
    )

from ._install import install, installed, uninstall
from ._transactions import AtomicScope

__all__ = ["AtomicScope", "install", "installed", "uninstall"]
