# pyright: strict
"""Receivers that both type checkers reject: each line with an "E:" comment must get an error."""

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


def wrong_todo_type(sender: type[Todo], todo: int, **kwargs: Any) -> None:
    pass


def wrong_sender_type(sender: type[int], todo: Todo, **kwargs: Any) -> None:
    pass


def narrower_todo_type(sender: type[Todo], todo: UrgentTodo, **kwargs: Any) -> None:
    pass


def needs_an_extra_argument(sender: type[Todo], todo: Todo, extra: str, **kwargs: Any) -> None:
    pass


def wrong_name(sender: type[Todo], item: Todo, **kwargs: Any) -> None:
    pass


async def wrong_type_async(sender: type[Todo], todo: str, **kwargs: Any) -> None:
    pass


def old_title_without_default(
    sender: type[Todo], todo: Todo, old_title: str | None, **kwargs: Any
) -> None:
    pass


def no_sender_parameter(**kwargs: Any) -> None:
    pass


class UrgentTodo(Todo):
    pass


todo_completed.connect(wrong_todo_type)  # E: todo is a Todo, not an int
todo_completed.connect(wrong_sender_type)  # E: sender is a Todo class
todo_completed.connect(narrower_todo_type)  # E: any Todo may be sent, not only UrgentTodo
todo_completed.connect(needs_an_extra_argument)  # E: extra is never sent
todo_completed.connect(wrong_name)  # E: the argument is todo, not item
todo_completed.connect(wrong_type_async)  # E: async receivers are checked too
todo_renamed.connect(old_title_without_default)  # E: old_title may be left out of a send
todo_completed.disconnect(wrong_todo_type)  # E: could never have been connected
# A documented limitation: send() may pass sender by position, so a receiver
# must name it (tocsin itself always passes it by keyword).
todo_completed.connect(no_sender_parameter)  # E: limitation, see docs/typed-signals.md


@receiver(todo_completed)  # E: @receiver checks the function too
def decorated_wrongly(sender: type[Todo], todo: int, **kwargs: Any) -> None:
    pass


@receiver(todo_completed, sender=Todo, priority="high")  # E: the options are typed too
def decorated_with_a_wrong_option(sender: type[Todo], todo: Todo, **kwargs: Any) -> None:
    pass
