"""The outbox table (``tocsin_outbox``) of tocsin.contrib.django.remote.Outbox."""

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]  # Django has no type hints
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
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
