"""The receivers of todo_completed, connected by TodosConfig.ready()."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.dispatch import receiver

from .models import Todo
from .signals import todo_completed

logger = logging.getLogger("todos")


@receiver(todo_completed, sender=Todo)
def log_completion(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
    """Log the item as soon as it is marked done (inside the transaction)."""
    logger.info("Todo #%s completed: %s", todo.pk, todo.title)


@receiver(todo_completed, sender=Todo, on_commit=True)
def email_owner(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
    """Email the owner once the transaction has committed: never for a change
    that was rolled back. A failure is logged to the ``tocsin`` logger (the
    receiver is robust, by default)."""
    send_mail(
        subject=f"Done: {todo.title}",
        message=f"Todo #{todo.pk} was completed at {todo.completed_at:%Y-%m-%d %H:%M} UTC.",
        from_email=None,
        recipient_list=settings.TODO_NOTIFY,
    )
