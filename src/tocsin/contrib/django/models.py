"""The app's model: the outbox table of :class:`tocsin.contrib.django.remote.Outbox`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.db import models

if TYPE_CHECKING:

    class Model:
        """What is used of ``django.db.models.Model``, for type checkers: Django ships
        no type hints, and a base class of unknown type would leave ``OutboxEntry``
        untyped."""

        objects: ClassVar[Any]
        _meta: ClassVar[Any]
        pk: Any

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

else:
    Model = models.Model

__all__ = ["OutboxEntry"]


class OutboxEntry(Model):
    """One remote event written in the transaction of its send, waiting to be
    published (after the commit, or by a worker's relay). The table is
    ``tocsin_outbox``, made by the app's migration (``manage.py migrate``)."""

    id: str = models.CharField(max_length=32, primary_key=True)  # the event id
    stream: str = models.CharField(max_length=255)
    # bytes, or a memoryview from some backends (PostgreSQL's)
    payload: bytes | memoryview = models.BinaryField()
    created_at: float = models.FloatField(db_index=True)  # seconds since the epoch

    class Meta:
        # Explicit, so that the class can be defined (in tests, say) even when
        # the app is not in INSTALLED_APPS.
        app_label = "tocsin"
        db_table = "tocsin_outbox"
        verbose_name = "outbox entry"
        verbose_name_plural = "outbox entries"

    def __str__(self) -> str:
        return f"event {self.id} for {self.stream}"
