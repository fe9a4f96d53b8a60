"""manage.py tocsin_signals: every signal of the project, and its receivers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.apps import AppConfig
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal
from django.test import override_settings

from tocsin import receiver

from .models import Shelf

order_placed = DjangoSignal()  # an app's signal, a django.dispatch one: tocsin's once installed


def stock_shelf(sender: Any, **kwargs: Any) -> None:
    pass


def index_shelf(sender: Any, **kwargs: Any) -> None:
    pass


_updated: dict[str, Any] = {}
other_app_receiver = _updated.update  # a receiver defined in no app's package


def run(*args: str) -> str:
    out = StringIO()
    call_command("tocsin_signals", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def receivers(project_apps: None) -> Iterator[None]:
    """Two receivers of post_save, one with tocsin's options, and one of order_placed."""
    post_save.connect(stock_shelf, sender=Shelf, dispatch_uid="shelves.stock")
    post_save.connect(index_shelf, sender=Shelf, on_commit=True, priority=5)
    receiver(order_placed)(stock_shelf)
    yield
    post_save.disconnect(dispatch_uid="shelves.stock", sender=Shelf)
    post_save.disconnect(index_shelf, sender=Shelf)
    order_placed.disconnect(stock_shelf)


def test_lists_djangos_signals_by_import_name_with_their_receivers(receivers: None) -> None:
    """post_save is named where Django defines it; its receivers come in call order,
    with where they were defined, their sender and their options."""
    out = run("--signal", "post_save")
    lines = out.splitlines()
    assert lines[0].startswith("django.db.models.signals.post_save  (")
    index = next(line for line in lines if "index_shelf" in line)
    stock = next(line for line in lines if "stock_shelf" in line)
    assert lines.index(stock) < lines.index(index)  # on-commit receivers come last
    assert "Shelf" in index
    assert "tests/c" in index  # tests/contrib/django/test_command.py:N, cut to fit
    assert "priority=5" in index
    assert "on_commit" in out
    assert "uid='shelves.stock'" in stock
    assert "order_placed" not in out


def test_json_has_every_field(receivers: None) -> None:
    listing = json.loads(run("--json", "--signal", "django.db.models.signals.post_save"))
    [signal] = listing["signals"]
    assert signal["name"] == "django.db.models.signals.post_save"
    second, first = (r for r in signal["receivers"] if r["qualname"].endswith("_shelf"))
    assert (first["qualname"], first["on_commit"], first["robust"], first["priority"]) == (
        "index_shelf",
        True,
        True,
        5,
    )
    assert second["dispatch_uid"] == "shelves.stock"
    assert second["file"] == __file__
    assert isinstance(second["line"], int)
    assert second["weak"] is True
    assert second["sender"].endswith("models.Shelf")


def test_glob_patterns_and_signals_without_receivers(receivers: None) -> None:
    names = [s["name"] for s in json.loads(run("--json", "--signal", "*test_command.*"))["signals"]]
    assert names == [f"{__name__}.order_placed"]
    quiet = json.loads(run("--json", "--signal", "django.core.signals.got_request_exc*"))
    assert quiet["signals"] == []  # no receivers: left out
    everything = json.loads(run("--json", "--all", "--signal", "django.*.got_request_exception"))
    assert [s["name"] for s in everything["signals"]] == [
        "django.core.signals.got_request_exception"
    ]


class ShelvesApp(AppConfig):  # type: ignore[misc]  # Django has no type hints
    """An app whose package is these tests' (contrib.django): the receivers above are its."""

    name = __name__.rpartition(".")[0]
    label = "shelves"


def test_app_keeps_what_the_app_defines(receivers: None) -> None:
    """--app shelves: the app's own signals, and its receivers of Django's signals;
    not Django's receivers, nor the signals where the app has none."""
    post_save.connect(other_app_receiver, weak=False)
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, f"{__name__}.ShelvesApp"]):
            listing = json.loads(run("--json", "--app", "shelves"))
    finally:
        post_save.disconnect(other_app_receiver)
    by_name = {s["name"]: [r["qualname"] for r in s["receivers"]] for s in listing["signals"]}
    assert by_name == {
        "django.db.models.signals.post_save": ["stock_shelf", "index_shelf"],
        f"{__name__}.order_placed": ["stock_shelf"],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "nope"], "no installed app is labelled 'nope'"),
        (["--signal", ""], "non-empty value"),
        (["--signal", "x" * 201], "at most 200 characters"),
        (["--signal", "x"] * 51, "at most 50"),
    ],
    ids=["unknown app", "empty pattern", "long pattern", "too many patterns"],
)
def test_bad_options_are_command_errors(project_apps: None, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_refuses_to_run_without_tocsin() -> None:
    """Without the integration, Django's signals are not tocsin's: nothing to list."""
    from tocsin.contrib.django.management.commands.tocsin_signals import Command

    with pytest.raises(CommandError, match=r"put 'tocsin\.contrib\.django' first"):
        call_command(Command(), stdout=StringIO())


def test_says_so_when_nothing_matches(project_apps: None) -> None:
    err = StringIO()
    call_command("tocsin_signals", "--signal", "no-such-signal", stdout=StringIO(), stderr=err)
    assert "no signal matches" in err.getvalue()
