"""``manage.py tocsin_status``: the stream of ``TOCSIN_REMOTE``, its groups and dead letters."""

from __future__ import annotations

import argparse

from tocsin.contrib.django._commands import RemoteCommand
from tocsin.remote import Remote
from tocsin.remote._cli import run_status, status_arguments


class Command(RemoteCommand):
    help = (
        "Print the stream of the Remote named by the TOCSIN_REMOTE setting: its length, "
        "each consumer group's consumers, pending and waiting events, and the number of "
        "dead letters. The options are those of `tocsin status`."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        status_arguments(parser)

    def run(self, remote: Remote, options: argparse.Namespace) -> int:
        return run_status(remote, options)
