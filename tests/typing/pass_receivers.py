# pyright: strict
"""Receivers that both type checkers accept for a typed signal."""

from __future__ import annotations

from typing import Any

from tocsin import TypedSignal, receiver


class Todo:
    title: str = ""


@TypedSignal
def todo_completed(sender: type[Todo], *, todo: Todo) -> None:
    """Sent when a todo is marked as done."""


@TypedSignal
def todo_renamed(sender: type[Todo], *, todo: Todo, old_title: str | None = None) -> None:
    """Sent when a todo is renamed; old_title may be left out."""


def on_done(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
    print(todo.title)


def on_anything(sender: object, **kwargs: Any) -> str:
    return "seen"


def on_wider_types(sender: type, todo: object, **kwargs: Any) -> int:
    return 1


def on_keyword_todo(sender: type[Todo], *, todo: Todo, **kwargs: Any) -> None:
    pass


async def on_done_async(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
    return todo.title


def on_renamed(sender: type[Todo], todo: Todo, old_title: str | None = None, **kwargs: Any) -> None:
    pass


class Listener:
    def on_done(self, sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
        pass


todo_completed.connect(on_done)
todo_completed.connect(on_anything, sender=Todo, weak=False, dispatch_uid="seen", priority=1)
todo_completed.connect(on_wider_types)
todo_completed.connect(on_keyword_todo)
todo_completed.connect(on_done_async)
todo_completed.connect(Listener().on_done)
todo_completed.connect(on_done, on_commit=True, robust=False)
todo_renamed.connect(on_renamed)
todo_renamed.connect(on_anything)
todo_completed.disconnect(on_done)
todo_completed.disconnect(dispatch_uid="seen", sender=Todo)


@receiver(todo_completed)
def decorated(sender: type[Todo], todo: Todo, **kwargs: Any) -> str:
    return todo.title


@receiver(todo_completed, sender=Todo, on_commit=True, priority=2)
async def decorated_async(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
    pass


@receiver(todo_renamed, weak=False, dispatch_uid="renamed")
def decorated_renamed(sender: object, **kwargs: Any) -> None:
    pass


# The decorated function can still be called with the signal's arguments.
title: str = decorated(Todo, todo=Todo())
