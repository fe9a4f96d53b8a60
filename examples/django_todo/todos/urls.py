"""The todos app's URLs."""

from __future__ import annotations

from typing import Any

from django.urls import path

from . import views

app_name = "todos"
urlpatterns: list[Any] = [
    path("", views.todo_list, name="list"),
    path("<int:pk>/done/", views.mark_done, name="done"),
]
