"""The app's model: the outbox table of :class:`tocsin.contrib.django.remote.Outbox`."""

from __future__ import annotations

from django.db import models

__all__ = ["OutboxEntry"]


class OutboxEntry(models.Model):  # type: ignore[misc]  # Django has no type hints
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
