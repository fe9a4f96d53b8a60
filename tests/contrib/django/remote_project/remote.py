"""The project's Remote (TOCSIN_REMOTE): orders travel as label and pk, through the
outbox; the worker's receiver appends what it got to TOCSIN_TEST_OUT."""

import json
import os
from typing import Any

from django.db.models.signals import post_save

from tocsin.contrib.django.remote import ModelKey, Outbox, register_models
from tocsin.remote import JSONSerializer, RedisStreamsTransport, Remote

from .shop.models import Order

serializer = JSONSerializer()
register_models(serializer, "shop")
remote = Remote(
    RedisStreamsTransport(url=os.environ.get("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379/0")),
    stream=os.environ.get("TOCSIN_TEST_STREAM", "tocsin:test-project"),
    serializer=serializer,
    outbox=Outbox(relay_after=0.5),
)


@remote.receiver(post_save, sender=Order)
def record_order(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """In the worker: what the event brought, loaded."""
    got: dict[str, Any] = {
        "sender": sender._meta.label,
        "created": created,
        "using": kwargs["using"],
    }
    if isinstance(instance, ModelKey):
        got["missing"] = instance.pk
    else:
        got.update(pk=instance.pk, customer=instance.customer, pid=os.getpid())
    with open(os.environ["TOCSIN_TEST_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(got) + "\n")
