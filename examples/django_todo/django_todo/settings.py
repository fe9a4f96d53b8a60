"""Settings of the Todo example: a development set-up, not a production one.

``"tocsin.contrib.django"`` comes first in INSTALLED_APPS: every Django signal
(``post_save``, and the app's own ``todo_completed``) is then a tocsin
signal, and receivers may be connected with ``on_commit=True``. The
django-debug-toolbar, with tocsin's panel of the signals each request sent,
is on when it is installed and DEBUG is true.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

# A development key: set DJANGO_SECRET_KEY anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-todo-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INTERNAL_IPS = ["127.0.0.1"]  # the toolbar shows itself to these

INSTALLED_APPS = [
    "tocsin.contrib.django",  # first: every app after it connects to tocsin signals
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "todos",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# The toolbar, when it is installed (pip install django-debug-toolbar): its panels
# and tocsin's, which lists every signal a request sent.
TOOLBAR = DEBUG and importlib.util.find_spec("debug_toolbar") is not None
if TOOLBAR:
    from debug_toolbar.settings import PANELS_DEFAULTS

    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    DEBUG_TOOLBAR_PANELS = [*PANELS_DEFAULTS, "tocsin.contrib.django.panels.SentSignalsPanel"]

ROOT_URLCONF = "django_todo.urls"
WSGI_APPLICATION = "django_todo.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_TODO_DB", BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# The on-commit receiver emails the owner; in development, to the console.
# Django 6.1 replaced EMAIL_BACKEND with MAILERS.
CONSOLE_MAIL = "django.core.mail.backends.console.EmailBackend"
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": CONSOLE_MAIL}}
else:
    EMAIL_BACKEND = CONSOLE_MAIL
DEFAULT_FROM_EMAIL = "todos@example.com"
TODO_NOTIFY = ["owner@example.com"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "todos": {"handlers": ["console"], "level": "INFO"},
        # failures of robust receivers (send_robust, on-commit receivers) are logged here
        "tocsin": {"handlers": ["console"], "level": "ERROR"},
    },
}
