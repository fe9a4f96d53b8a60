"""Django models for the integration's tests (in tests/_django_orm.py's app)."""

from __future__ import annotations

from django.db import models

from _django_orm import APP_LABEL


class Shelf(models.Model):  # type: ignore[misc]  # Django has no type hints here
    name = models.CharField(max_length=50)

    class Meta:
        app_label = APP_LABEL


class Label(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=50)
    shelves = models.ManyToManyField(Shelf, related_name="labels")

    class Meta:
        app_label = APP_LABEL


MODELS = (Shelf, Label)
