# pyright: strict
"""A plain Signal stays untyped: any arguments, any receiver that takes **kwargs."""

from __future__ import annotations

from typing import Any

from tocsin import Signal, TypedSignal, receiver

anything = Signal()


@TypedSignal
def typed(sender: object, *, count: int) -> None:
    """A typed signal, for the list case below."""


def on_whatever(sender: int, whatever: str, **kwargs: Any) -> int:
    return 1


anything.send(sender=None, x=1, y="a")
anything.send(object())
anything.send_robust(sender=1, whatever=[])
anything.connect(on_whatever, weak=False)
anything.disconnect(on_whatever)


@receiver(anything)
def decorated(sender: object, extra: int = 0, **kwargs: Any) -> int:
    return extra


# A plain signal's @receiver returns the function as it is, own signature included.
result: int = decorated(sender=None, signal=anything, extra=2)


# A list of signals is not checked against any of them.
@receiver([anything, typed])
def on_both(**kwargs: Any) -> None:
    pass


async def asend_anything() -> None:
    await anything.asend(sender=None, anything=object())
