"""Connected at the import of the models module, before any ready() runs."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_save
from django.dispatch import receiver

sent: list[str] = []


class Note(models.Model):  # type: ignore[misc]  # Django has no type hints here
    text = models.CharField(max_length=50)

    class Meta:
        app_label = "optionsapp"


@receiver(post_save, sender="optionsapp.Note", on_commit=True, priority=1)  # type: ignore[untyped-decorator]
def after_commit(sender: type, instance: Note, **kwargs: Any) -> None:
    sent.append(instance.text)
