"""The app config: "tocsin.contrib.django" in INSTALLED_APPS installs tocsin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("django", reason="tocsin.contrib.django needs Django")

from django.apps import AppConfig
from django.db.models.signals import ModelSignal, post_save

import tocsin
from tocsin.contrib.django import installed, uninstall
from tocsin.contrib.django.apps import TocsinConfig


def test_the_app_config_installs_when_django_creates_it() -> None:
    """Django finds TocsinConfig from the app's name; creating it installs."""
    assert not installed()
    try:
        config = AppConfig.create("tocsin.contrib.django")
        assert isinstance(config, TocsinConfig)
        assert config.label == "tocsin"
        assert installed()
        assert isinstance(post_save, tocsin.Signal)
    finally:
        uninstall()
    assert type(post_save) is ModelSignal


def test_listed_first_it_comes_before_the_models_modules_that_use_its_options() -> None:
    """In a fresh process, with the app first in INSTALLED_APPS, a models module
    that connects with on_commit=True at import time works, and its receiver
    waits for the commit."""
    script = textwrap.dedent(
        """
        import django
        from django.conf import settings
        from django.db import connection, transaction

        settings.configure(
            INSTALLED_APPS=["tocsin.contrib.django", "contrib.django.optionsapp"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        django.setup()
        from contrib.django.optionsapp.models import Note, sent

        with connection.schema_editor() as editor:
            editor.create_model(Note)
        with transaction.atomic():
            Note.objects.create(text="hello")
            assert sent == [], sent
        assert sent == ["hello"], sent
        print("ok")
        """
    )
    tests = Path(__file__).resolve().parents[2]
    env_path = [str(tests), *sys.path]
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(env_path)},
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_a_misspelt_app_name_fails_as_django_says() -> None:
    with pytest.raises(ImportError, match=r"tocsin\.contrib\.djang"):
        AppConfig.create("tocsin.contrib.djang")
