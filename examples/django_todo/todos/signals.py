"""The app's own signal.

A ``django.dispatch.Signal``, not a ``tocsin.Signal``: with
``"tocsin.contrib.django"`` in INSTALLED_APPS it is a tocsin signal anyway
(receivers may use ``on_commit=True``), and the app keeps working, unchanged,
in a project without tocsin. README.md says more.
"""

from django.dispatch import Signal

todo_completed = Signal()
"""Sent by :meth:`todos.models.Todo.mark_as_done`, inside its transaction, with
``sender=Todo`` and ``todo=`` the item."""
