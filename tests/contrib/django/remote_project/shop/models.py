from django.db import models


class Order(models.Model):  # type: ignore[misc]  # Django has no type hints
    customer = models.CharField(max_length=100)
