"""The built-in signals, with Django's names and arguments.

Import them from here and connect to them like any other signal::

    from tocsin.signals import request_finished

    @receiver(request_finished)
    def close_connections(sender, **kwargs): ...

Who sends them:

* the request signals, by the WSGI and ASGI middleware in :mod:`tocsin.contrib.wsgi`
  and :mod:`tocsin.contrib.asgi`;
* the model signals, by :mod:`tocsin.contrib.sqlalchemy` for SQLAlchemy ORM classes
  (docs/model-signals.md), or by your own code;
* the auth signals, by the code of your application that logs users in and out,
  with :func:`cleanse_credentials` for what a failed login sends.

Each signal's docstring says its sender and keyword arguments. Receivers also get
``signal`` and ``sender``, and should accept ``**kwargs`` so that new arguments
do not break them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .dispatcher import Signal

__all__ = [
    "cleanse_credentials",
    "got_request_exception",
    "m2m_changed",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
    "request_finished",
    "request_started",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
]


def _signal(doc: str, *, use_caching: bool = False) -> Signal:
    signal = Signal(use_caching=use_caching)
    signal.__doc__ = doc
    return signal


# -- requests --------------------------------------------------------------------------

request_started: Signal = _signal(
    """Sent when a request comes in, before the application sees it.

    sender: the middleware class (``tocsin.contrib.wsgi.RequestSignalsMiddleware`` or
    ``tocsin.contrib.asgi.RequestSignalsMiddleware``).
    environ: the WSGI environ (WSGI); scope: the ASGI scope (ASGI).
    """
)

request_finished: Signal = _signal(
    """Sent once the response has been delivered, exactly once per request.

    Under WSGI, when the server closes the response iterable (also after an error);
    under ASGI, after the last body message, or when the client disconnects, the
    request is cancelled or the application fails.

    sender: the middleware class. environ (WSGI) or scope (ASGI).
    """
)

got_request_exception: Signal = _signal(
    """Sent when the application raises while handling a request; the exception then
    propagates as before.

    sender: the middleware class. environ (WSGI) or scope (ASGI), and exception: the
    exception. (Django sends ``sender=None, request=request``; there is no request
    object below the framework.)
    """
)

# -- models ----------------------------------------------------------------------------
# Sent with the model class as sender, as Django does; like Django's, they cache
# their receivers per sender.

pre_init: Signal = _signal(
    """Sent at the start of a model's ``__init__``.

    sender: the model class. args, kwargs: the arguments passed to ``__init__``.
    instance: the instance being built (sent by the SQLAlchemy integration; not
    by Django).
    """,
    use_caching=True,
)

post_init: Signal = _signal(
    """Sent at the end of a model's ``__init__``.

    sender: the model class. instance: the new instance.
    """,
    use_caching=True,
)

pre_save: Signal = _signal(
    """Sent before an instance is written to the database.

    sender: the model class. instance, raw (True when loading fixtures as they are),
    using (the database alias or bind name), update_fields (the names of the fields
    being updated, or None).
    """,
    use_caching=True,
)

post_save: Signal = _signal(
    """Sent after an instance is written to the database.

    sender: the model class. instance, created (True for an insert), raw, using,
    update_fields.
    """,
    use_caching=True,
)

pre_delete: Signal = _signal(
    """Sent before an instance is deleted.

    sender: the model class. instance, using, origin (what the delete started from).
    """,
    use_caching=True,
)

post_delete: Signal = _signal(
    """Sent after an instance is deleted.

    sender: the model class. instance, using, origin.
    """,
    use_caching=True,
)

m2m_changed: Signal = _signal(
    """Sent when a many-to-many relationship changes.

    sender: the intermediate model or table. action: one of ``"pre_add"``,
    ``"post_add"``, ``"pre_remove"``, ``"post_remove"``, ``"pre_clear"``,
    ``"post_clear"``. instance: the instance whose relationship changed. reverse:
    whether it changed from the other side. model: the class of the objects added
    or removed. pk_set: their primary keys (None for clears). using, raw.
    The SQLAlchemy integration sends the add and remove actions, never the
    clear ones (docs/model-signals.md).
    """,
    use_caching=True,
)

# -- auth ------------------------------------------------------------------------------

user_logged_in: Signal = _signal(
    """Sent after a user has logged in.

    sender: the user's class. request: the request (whatever your framework uses).
    user: the user.
    """
)

user_logged_out: Signal = _signal(
    """Sent when a user logs out, before the session is ended.

    sender: the user's class (``type(None)`` for an anonymous user). request, user
    (None for an anonymous user).
    """
)

user_login_failed: Signal = _signal(
    """Sent when a login fails.

    sender: a string naming who authenticates (Django sends
    ``"django.contrib.auth"``). credentials: the credentials given, passed through
    :func:`cleanse_credentials` first. request.
    """
)

# Django's rule, word for word: any key containing one of these, in any case.
_SENSITIVE = re.compile(r"api|token|key|secret|password|signature", re.IGNORECASE)
CLEANSED_SUBSTITUTE = "********************"


def cleanse_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of *credentials* with secret values masked, for ``user_login_failed``.

    The value of every key containing ``api``, ``token``, ``key``, ``secret``,
    ``password`` or ``signature`` (in any case) becomes ``"********************"``,
    as Django's ``_clean_credentials`` does. Unlike Django's, the mapping given is
    not changed.

    >>> cleanse_credentials({"username": "ada", "password": "s3cret"})
    {'username': 'ada', 'password': '********************'}
    """
    if not isinstance(credentials, Mapping):
        raise TypeError(
            f"credentials must be a mapping of names to values, got {type(credentials).__name__}"
        )
    return {
        key: CLEANSED_SUBSTITUTE if isinstance(key, str) and _SENSITIVE.search(key) else value
        for key, value in credentials.items()
    }
