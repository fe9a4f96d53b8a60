"""The project's Remote, named by the ``TOCSIN_REMOTE`` setting."""

from __future__ import annotations

import importlib

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...remote._remote import Remote

__all__ = ["remote_from_settings"]

SETTING = "TOCSIN_REMOTE"


def remote_from_settings() -> Remote:
    """The :class:`~tocsin.remote.Remote` the ``TOCSIN_REMOTE`` setting names,
    as ``"module:attribute"`` (``"myproject.remote:remote"``), or a ``Remote``
    itself. The module is imported: the setting is the project's, not an event's.

    :raises django.core.exceptions.ImproperlyConfigured: if the setting is
        missing or malformed, its module cannot be imported, or what it names
        is not a ``Remote``.
    """
    value = getattr(settings, SETTING, None)
    if value is None:
        raise ImproperlyConfigured(
            f"the {SETTING} setting is missing: set it to the Remote the workers use, "
            f'as "module:attribute" (TOCSIN_REMOTE = "myproject.remote:remote").'
        )
    if isinstance(value, Remote):
        return value
    module_name, colon, attribute = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not (module_name and colon and attribute):
        raise ImproperlyConfigured(
            f'{SETTING} must be "module:attribute" (such as "myproject.remote:remote"); '
            f"got {value!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImproperlyConfigured(f"{SETTING}: cannot import {module_name!r}: {error}") from error
    remote = getattr(module, attribute, None)
    if not isinstance(remote, Remote):
        raise ImproperlyConfigured(
            f"{SETTING}: {value} is not a tocsin.remote.Remote (it is {type(remote).__name__})."
        )
    return remote
