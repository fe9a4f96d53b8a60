"""Django's model signals for SQLAlchemy 2 ORM classes, and on-commit receivers.

::

    from tocsin.contrib.sqlalchemy import enable_model_signals

    class Base(DeclarativeBase): ...

    enable_model_signals(Base)  # every class Base maps now sends them

What is sent, and when, is on docs/model-signals.md; on-commit receivers
(``post_save.connect(r, sender=Todo, on_commit=True)``) on docs/after-commit.md.
Importing this module makes on-commit receivers wait for the commit of the
SQLAlchemy session that a send's arguments belong to.
Needs the ``sqlalchemy`` extra: ``pip install 'tocsin[sqlalchemy]'``.
"""

from __future__ import annotations

try:
    import sqlalchemy as _sqlalchemy
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tocsin.contrib.sqlalchemy needs SQLAlchemy 2: pip install 'tocsin[sqlalchemy]'"
    ) from _error

if int(_sqlalchemy.__version__.split(".")[0]) < 2:  # pragma: no cover
    raise ImportError(
        f"tocsin.contrib.sqlalchemy needs SQLAlchemy 2.0 or newer; "
        f"{_sqlalchemy.__version__} is installed."
    )

from . import _transactions
from ._base import default_using
from ._install import disable_model_signals, enable_model_signals, model_signals_enabled
from ._keys import ModelKey, register_models
from ._outbox import Outbox
from ._transactions import SessionScope, bind_session

# On-commit receivers wait for SQLAlchemy sessions as soon as this is imported,
# whether or not any class sends model signals.
_transactions.install()

__all__ = [
    "ModelKey",
    "Outbox",
    "SessionScope",
    "bind_session",
    "default_using",
    "disable_model_signals",
    "enable_model_signals",
    "model_signals_enabled",
    "register_models",
]
