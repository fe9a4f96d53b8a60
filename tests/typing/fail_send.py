# pyright: strict
"""Sends that both type checkers reject: each line with an "E:" comment must get an error."""

from __future__ import annotations

from tocsin import TypedSignal


class Todo:
    title: str = ""


@TypedSignal
def todo_completed(sender: type[Todo], *, todo: Todo) -> None:
    """Sent when a todo is marked as done."""


def send_wrongly(todo: Todo) -> None:
    todo_completed.send(sender=Todo)  # E: missing argument
    todo_completed.send(sender=Todo, todo=todo, priority=1)  # E: unknown argument
    todo_completed.send(sender=Todo, todo="buy milk")  # E: wrong type
    todo_completed.send(sender=Todo, todo=None)  # E: None is not a Todo
    todo_completed.send(sender=object, todo=todo)  # E: wrong sender type
    todo_completed.send(sender=todo, todo=todo)  # E: an instance, not the class
    todo_completed.send(todo=todo)  # E: missing sender
    todo_completed.send(Todo, todo)  # E: todo must be given by keyword
    todo_completed.send(sender=Todo, todo=todo, signal=None)  # E: signal is not an argument
    todo_completed.send_robust(sender=Todo, todo=1)  # E: wrong type, send_robust


async def asend_wrongly(todo: Todo) -> None:
    await todo_completed.asend(sender=Todo, todo=[todo])  # E: wrong type, asend
    await todo_completed.asend(sender=Todo)  # E: missing argument, asend
    await todo_completed.asend_robust(sender=Todo, todo=todo, extra=1)  # E: unknown, asend_robust
