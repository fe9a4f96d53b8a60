"""Django's ORM in the test process, for tests that run a scenario on Django's
models and on tocsin's SQLAlchemy integration and compare what they send.

Call :func:`configure` before importing ``django.db.models``; it is
idempotent, and every module that needs Django's settings configured shares
it (settings can be configured once per process). It sets up an in-memory
SQLite database and one app, :data:`APP_LABEL`, to declare models in
(``class Meta: app_label = APP_LABEL``): Django finds reverse relations, which
its deletion collector follows, only among the models of installed apps.

``DEBUG`` stays ``False``: the compatibility suite (tests/compat) checks what
``django.dispatch`` does without it, and patches ``django.conf.settings`` for
the cases with it. Importing this module needs Django.
"""

from __future__ import annotations

import django
from django.apps import AppConfig, apps
from django.conf import settings

APP_LABEL = "tocsin_tests"


class TestModels(AppConfig):  # type: ignore[misc]  # Django has no type hints here
    """The app the tests' Django models belong to."""

    name = __name__
    label = APP_LABEL
    default_auto_field = "django.db.models.AutoField"


def configure() -> None:
    """Configure Django's settings and apps, once per process."""
    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            INSTALLED_APPS=[f"{__name__}.TestModels"],
            LOGGING_CONFIG=None,  # leave the process's logging alone
        )
    django.setup()
    if not apps.is_installed(__name__):
        raise RuntimeError(
            "Django's settings were configured without the tests' app; "
            f"configure them with {__name__}.configure()."
        )
