"""The admin: the list of todos, with an action that marks them done (and so sends)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Todo


@admin.register(Todo)
class TodoAdmin(admin.ModelAdmin):
    list_display = ["title", "done", "created_at", "completed_at"]
    list_filter = ["done"]
    actions = ["mark_as_done"]

    @admin.action(description="Mark the selected todos as done")
    def mark_as_done(self, request: HttpRequest, queryset: QuerySet[Todo]) -> None:
        done = sum(todo.mark_as_done() for todo in queryset)
        self.message_user(request, f"{done} todo{'s' * (done != 1)} marked as done.")
