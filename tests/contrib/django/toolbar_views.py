"""The views of the panel's tests (toolbar_urls.py): they send signals."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal as DjangoSignal
from django.http import HttpRequest, HttpResponse

from .models import Shelf

shelf_checked = DjangoSignal()  # an app's signal, sent by a view

PAGE = "<html><body><p>{}</p></body></html>"


def show_toolbar(request: HttpRequest) -> bool:
    return True


def create_shelf(request: HttpRequest) -> HttpResponse:
    """Saves a shelf in a transaction that commits, then sends an app's signal."""
    with transaction.atomic():
        shelf = Shelf.objects.create(name="kitchen")
    shelf_checked.send_robust(sender=Shelf, shelf=shelf)
    return HttpResponse(PAGE.format("created"))


def roll_back(request: HttpRequest) -> HttpResponse:
    """Saves a shelf in a transaction that rolls back."""
    try:
        with transaction.atomic():
            Shelf.objects.create(name="attic")
            raise LookupError("no attic")
    except LookupError:
        pass
    return HttpResponse(PAGE.format("rolled back"))


def check_in_transaction(request: HttpRequest) -> HttpResponse:
    """Sends the app's signal in a transaction that commits."""
    with transaction.atomic():
        shelf_checked.send(sender=Shelf, shelf="hall")
    return HttpResponse(PAGE.format("checked"))


async def send_async(request: HttpRequest) -> HttpResponse:
    """An async view: its sends are recorded in its task."""
    await shelf_checked.asend_robust(sender=None, shelf="async")
    return HttpResponse(PAGE.format("sent"))


def send_many(request: HttpRequest) -> HttpResponse:
    for number in range(int(request.GET["count"])):
        shelf_checked.send_robust(sender=None, shelf=number)
    return HttpResponse(PAGE.format("sent"))
