# pyright: strict
"""Sends that both type checkers accept: every argument given, with the right types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tocsin import Signal, TypedSignal, typed_signal


class Todo:
    title: str = ""


class UrgentTodo(Todo):
    pass


@TypedSignal
def todo_completed(sender: type[Todo], *, todo: Todo) -> None:
    """Sent when a todo is marked as done."""


@TypedSignal
def todo_renamed(sender: type[Todo], *, todo: Todo, old_title: str | None = None) -> None:
    """Sent when a todo is renamed; old_title may be left out."""


@typed_signal(check=True, use_caching=True)
def todo_deleted(sender: type[Todo], *, todo: Todo, soft: bool) -> None:
    """Sent when a todo is deleted."""


def spec(sender: object, *, count: int) -> None:
    """A spec used without the decorator syntax."""


counted = TypedSignal(spec, check=True)


def send_everything(todo: Todo) -> None:
    todo_completed.send(Todo, todo=todo)
    todo_completed.send(sender=Todo, todo=todo)
    todo_completed.send(sender=UrgentTodo, todo=UrgentTodo())
    todo_completed.send_robust(sender=Todo, todo=todo)
    todo_renamed.send(sender=Todo, todo=todo)
    todo_renamed.send(sender=Todo, todo=todo, old_title="buy milk")
    todo_renamed.send(sender=Todo, todo=todo, old_title=None)
    todo_deleted.send(sender=Todo, todo=todo, soft=True)
    counted.send(sender=None, count=3)
    counted.send("anything", count=3)
    responses: list[tuple[Callable[..., Any], Any]] = todo_completed.send(Todo, todo=todo)
    print(responses)


async def asend_everything(todo: Todo) -> None:
    await todo_completed.asend(sender=Todo, todo=todo)
    await todo_completed.asend_robust(Todo, todo=todo)
    await todo_deleted.asend(sender=Todo, todo=todo, soft=False)


def takes_a_signal(signal: Signal) -> bool:
    return signal.has_listeners()


takes_a_signal(todo_completed)
