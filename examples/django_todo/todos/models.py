"""The Todo model."""

from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone

from .signals import todo_completed


class Todo(models.Model):
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["done", "-created_at"]

    def __str__(self) -> str:
        return str(self.title)

    def mark_as_done(self) -> bool:
        """Mark the item done and send ``todo_completed``, in one transaction: the
        on-commit receivers run once it has committed. Returns False, sending
        nothing, if the item was done already."""
        if self.done:
            return False
        with transaction.atomic():
            self.done = True
            self.completed_at = timezone.now()
            self.save(update_fields=["done", "completed_at"])
            todo_completed.send(sender=Todo, todo=self)
        return True
