"""Remote receivers in a Django project: model instances in events, an outbox
on the ORM, and the Remote the ``manage.py tocsin_*`` commands use.

::

    # myproject/remote.py
    from tocsin.remote import JSONSerializer, RedisStreamsTransport, Remote
    from tocsin.contrib.django.remote import Outbox, register_models

    serializer = JSONSerializer()
    register_models(serializer, "shop")          # shop's models travel as label + pk
    remote = Remote(
        RedisStreamsTransport(url="redis://127.0.0.1:6379/0"),
        serializer=serializer,
        outbox=Outbox(),                          # written in the send's atomic block
    )

    # settings.py
    TOCSIN_REMOTE = "myproject.remote:remote"     # for manage.py tocsin_worker

docs/django.md ("Remote receivers") has the details.
"""

from __future__ import annotations

from ._keys import ModelKey, register_models
from ._outbox import Outbox
from ._settings import remote_from_settings

__all__ = ["ModelKey", "Outbox", "register_models", "remote_from_settings"]
