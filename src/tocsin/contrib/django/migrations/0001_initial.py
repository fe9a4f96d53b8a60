"""The outbox table (``tocsin_outbox``) of tocsin.contrib.django.remote.Outbox."""

from typing import TYPE_CHECKING, Any, ClassVar

from django.db import migrations, models

if TYPE_CHECKING:

    class Base:
        """``django.db.migrations.Migration``, for type checkers: Django ships no
        type hints, and a base class of unknown type would leave this one untyped."""

else:
    Base = migrations.Migration


class Migration(Base):
    initial: bool = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="OutboxEntry",
            fields=[
                ("id", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("stream", models.CharField(max_length=255)),
                ("payload", models.BinaryField()),
                ("created_at", models.FloatField(db_index=True)),
            ],
            options={
                "verbose_name": "outbox entry",
                "verbose_name_plural": "outbox entries",
                "db_table": "tocsin_outbox",
            },
        ),
    ]
