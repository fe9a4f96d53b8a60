"""Receivers for tests about order: each records its name when called and returns it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class NamedReceivers:
    """Makes sync and async receivers named after what they record."""

    def __init__(self, module: str = __name__) -> None:
        self.module = module  # what describe() and error messages name the receivers after
        self.names: list[str] = []
        # The receivers are held here, so that weak connections stay alive.
        self.receivers: dict[str, Callable[..., Any]] = {}

    def sync(self, name: str) -> Callable[..., str]:
        def receive(**kwargs: Any) -> str:
            self.names.append(name)
            return name

        receive.__qualname__ = receive.__name__ = name
        receive.__module__ = self.module
        self.receivers[name] = receive
        return receive

    def async_(self, name: str) -> Callable[..., Awaitable[str]]:
        async def receive(**kwargs: Any) -> str:
            self.names.append(name)
            return name

        receive.__qualname__ = receive.__name__ = name
        receive.__module__ = self.module
        self.receivers[name] = receive
        return receive


def responses(result: list[tuple[Any, Any]]) -> list[Any]:
    """The responses of a send's result, without the receivers."""
    return [response for _receiver, response in result]
