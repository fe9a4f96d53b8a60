"""The app config: "tocsin.contrib.django" in INSTALLED_APPS installs tocsin."""

from __future__ import annotations

import pytest
from django.apps import AppConfig
from django.db.models.signals import ModelSignal, post_save

import tocsin
from tocsin.contrib.django import installed, uninstall
from tocsin.contrib.django.apps import TocsinConfig


def test_the_app_config_installs_from_ready() -> None:
    """Django finds TocsinConfig from the app's name; its ready() installs."""
    assert not installed()
    config = AppConfig.create("tocsin.contrib.django")
    assert isinstance(config, TocsinConfig)
    assert config.label == "tocsin"
    try:
        config.ready()
        assert installed()
        assert isinstance(post_save, tocsin.Signal)
    finally:
        uninstall()
    assert type(post_save) is ModelSignal


def test_a_misspelt_app_name_fails_as_django_says() -> None:
    with pytest.raises(ImportError, match=r"tocsin\.contrib\.djang"):
        AppConfig.create("tocsin.contrib.djang")
