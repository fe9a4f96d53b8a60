"""The list of todos, a form to add one, and a button to mark one done."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import Todo


class TodoForm(forms.ModelForm):
    class Meta:
        model = Todo
        fields = ["title"]


def todo_list(request: HttpRequest) -> HttpResponse:
    form = TodoForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("todos:list")
    return render(request, "todos/todo_list.html", {"todos": Todo.objects.all(), "form": form})


@require_POST
def mark_done(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(Todo, pk=pk).mark_as_done()
    return redirect("todos:list")
