"""The built-in signals: what tocsin.signals offers, and cleanse_credentials()."""

from __future__ import annotations

from typing import Any

import pytest

import tocsin.signals as builtin
from tocsin import Signal
from tocsin.signals import CLEANSED_SUBSTITUTE, cleanse_credentials

DJANGO_NAMES = [
    "request_started",
    "request_finished",
    "got_request_exception",
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
]
MODEL_SIGNALS = DJANGO_NAMES[3:10]  # pre_init ... m2m_changed


@pytest.mark.parametrize("name", DJANGO_NAMES)
def test_every_django_signal_is_a_documented_tocsin_signal(name: str) -> None:
    """Each built-in signal has Django's name, is a Signal, and documents its sender."""
    signal = getattr(builtin, name)
    assert isinstance(signal, Signal)
    assert name in builtin.__all__
    assert signal.__doc__ is not None
    assert "sender" in signal.__doc__


@pytest.mark.parametrize("name", MODEL_SIGNALS)
def test_model_signals_cache_per_sender_as_django_does(name: str) -> None:
    """Model signals are created with use_caching=True, like Django's ModelSignal."""
    assert getattr(builtin, name).use_caching is True


def test_the_signals_are_distinct_objects() -> None:
    """No two names share one signal."""
    signals = [getattr(builtin, name) for name in DJANGO_NAMES]
    assert len({id(s) for s in signals}) == len(signals)


def test_a_built_in_signal_sends_like_any_other() -> None:
    """Connecting to a built-in signal and sending it works as with a signal of your own."""
    seen: list[dict[str, Any]] = []

    def on_login(sender: object, **kwargs: Any) -> None:
        seen.append({"sender": sender, **kwargs})

    builtin.user_logged_in.connect(on_login)
    try:
        builtin.user_logged_in.send(sender=dict, request=None, user={"name": "ada"})
    finally:
        builtin.user_logged_in.disconnect(on_login)
    assert seen == [
        {"sender": dict, "signal": builtin.user_logged_in, "request": None, "user": {"name": "ada"}}
    ]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "client_secret",
        "Signature",
        "x-api-token",
        "new_password2",
    ],
)
def test_sensitive_keys_are_masked(key: str) -> None:
    """A key containing api, token, key, secret, password or signature (any case) is masked."""
    assert cleanse_credentials({key: "s3cret"}) == {key: CLEANSED_SUBSTITUTE}


@pytest.mark.parametrize("key", ["username", "email", "remember_me", "otp_code", "next"])
def test_other_keys_are_kept(key: str) -> None:
    """Other keys keep their values, as in Django."""
    assert cleanse_credentials({key: "ada"}) == {key: "ada"}


def test_the_mapping_given_is_not_changed() -> None:
    """Unlike Django's _clean_credentials, the caller's credentials are left as they were."""
    credentials = {"username": "ada", "password": "s3cret"}
    cleansed = cleanse_credentials(credentials)
    assert credentials == {"username": "ada", "password": "s3cret"}
    assert cleansed == {"username": "ada", "password": CLEANSED_SUBSTITUTE}
    assert CLEANSED_SUBSTITUTE == "*" * 20


def test_non_string_keys_are_kept_and_do_not_crash() -> None:
    """A key that is not a string cannot name a secret: its value is kept."""
    credentials: dict[Any, str] = {1: "one", "token": "t"}
    assert cleanse_credentials(credentials) == {1: "one", "token": CLEANSED_SUBSTITUTE}


def test_credentials_must_be_a_mapping() -> None:
    """Anything but a mapping is refused with a TypeError that says what was expected."""
    with pytest.raises(TypeError, match="mapping"):
        cleanse_credentials([("password", "x")])  # type: ignore[arg-type]


def test_matches_djangos_own_cleansing() -> None:
    """For string keys the result is what Django's _clean_credentials gives."""
    django_auth = pytest.importorskip("django.contrib.auth", reason="Django not installed")
    credentials = {"username": "ada", "Password": "x", "api": "y", "pin": "1234"}
    expected = django_auth._clean_credentials(dict(credentials))
    assert cleanse_credentials(credentials) == expected
