"""``manage.py tocsin_dead_letters``: list, replay or discard ``TOCSIN_REMOTE``'s dead letters."""

from __future__ import annotations

import argparse

from tocsin.contrib.django._commands import RemoteCommand
from tocsin.remote import Remote
from tocsin.remote._cli import dead_letters_arguments, run_dead_letters


class Command(RemoteCommand):
    help = (
        "List the dead letters of the Remote named by the TOCSIN_REMOTE setting, with "
        "their errors; or replay them (--replay, --replay-all) once the cause is fixed, or "
        "remove them (--discard, --discard-all). The options are those of "
        "`tocsin dead-letters`."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        dead_letters_arguments(parser)

    def run(self, remote: Remote, options: argparse.Namespace) -> int:
        return run_dead_letters(remote, options)
