"""``manage.py tocsin_signals``: every signal of the project, and its receivers.

Django's own signals under their import names (``django.db.models.signals.post_save``),
the apps' signals, tocsin's, each with the table ``tocsin list`` prints (or
its JSON): receivers in call order, where they were defined, their sender,
weak or strong, and their options (``priority``, ``on_commit``,
``dispatch_uid``). Read from :mod:`tocsin.introspect`; nothing is changed.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tocsin import introspect
from tocsin.__main__ import _json, _tables
from tocsin.contrib.django import installed
from tocsin.dispatcher import Signal
from tocsin.introspect import ReceiverInfo

__all__ = ["Command"]

MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 200

Listing = list[tuple[str, list[ReceiverInfo]]]


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type hints
    """``manage.py tocsin_signals [--signal PATTERN] [--app LABEL] [--all] [--json]``."""

    help = (
        "List every signal of the project with its receivers, in the order send() calls "
        "them (tocsin.introspect). Signals without receivers are left out unless --all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--signal",
            action="append",
            default=[],
            metavar="PATTERN",
            help="only the signals whose name contains PATTERN (case-insensitive), or "
            "matches it as a glob when it has * ? or [ (post_save, 'django.core.*'); "
            "repeat it for several",
        )
        parser.add_argument(
            "--app",
            action="append",
            default=[],
            metavar="LABEL",
            help="only what the app defines (repeatable): its own signals, with all "
            "their receivers, and its receivers of other signals",
        )
        parser.add_argument(
            "--all", action="store_true", help="also the signals that have no receivers"
        )
        parser.add_argument(
            "--json", action="store_true", help='print JSON: {"signals": [...]}, as tocsin list'
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not installed():
            raise CommandError(
                "tocsin is not installed in this process: put 'tocsin.contrib.django' first "
                "in INSTALLED_APPS (or call tocsin.contrib.django.install() at start-up)."
            )
        patterns = _patterns(options["signal"], "--signal")
        modules = [_app_module(label) for label in _patterns(options["app"], "--app")]
        listing = _listing(patterns, modules, keep_empty=options["all"])
        if options["json"]:
            self.stdout.write(json.dumps({"signals": [_json(n, i) for n, i in listing]}, indent=2))
        elif listing:
            self.stdout.write(_tables(listing, _width(self.stdout)))
        else:
            self.stderr.write("tocsin_signals: no signal matches (--all lists the empty ones)")


def _patterns(values: list[str], option: str) -> list[str]:
    """The option's values, checked: a bounded number of bounded, non-empty strings."""
    if len(values) > MAX_PATTERNS:
        raise CommandError(f"{option} is given {len(values)} times; at most {MAX_PATTERNS}.")
    for value in values:
        if not value.strip() or len(value) > MAX_PATTERN_LENGTH:
            raise CommandError(
                f"{option} takes a non-empty value of at most {MAX_PATTERN_LENGTH} "
                f"characters; got {value[:40]!r}{'...' if len(value) > 40 else ''}."
            )
    return values


def _app_module(label: str) -> str:
    """The package name of the installed app *label* (``auth`` -> ``django.contrib.auth``)."""
    try:
        return str(apps.get_app_config(label).name)
    except LookupError:
        known = ", ".join(sorted(config.label for config in apps.get_app_configs()))
        message = f"--app: no installed app is labelled {label!r}; the labels: {known}."
        raise CommandError(message) from None


def _listing(patterns: list[str], modules: list[str], *, keep_empty: bool) -> Listing:
    listing: Listing = []
    for name, signal in introspect.signals():
        if patterns and not any(_matches(name, pattern) for pattern in patterns):
            continue
        infos = _of_apps(name, signal, modules)
        if infos is not None and (infos or keep_empty):
            listing.append((name, infos))
    return listing


def _of_apps(name: str, signal: Signal, modules: list[str]) -> list[ReceiverInfo] | None:
    """The receivers to list for a signal: all of them, or, with ``--app``, all of
    an app's signal and the app's own receivers of the others (None: leave the
    signal out)."""
    infos = introspect.receivers(signal)
    if not modules or any(_within(name, module) for module in modules):
        return infos
    mine = [i for i in infos if any(_within(i.module or "", m) for m in modules)]
    return mine or None


def _within(dotted: str, package: str) -> bool:
    return dotted == package or dotted.startswith(package + ".")


def _matches(name: str, pattern: str) -> bool:
    if any(character in pattern for character in "*?["):
        return fnmatch.fnmatchcase(name.lower(), pattern.lower())
    return pattern.lower() in name.lower()


def _width(stream: Any) -> int:
    """The terminal's width, or 100 columns when the output is not a terminal."""
    if stream.isatty():
        return max(shutil.get_terminal_size((100, 24)).columns, 60)
    return 100
