"""``manage.py tocsin_worker``: consume the remote events of ``TOCSIN_REMOTE``."""

from __future__ import annotations

import argparse

from tocsin.contrib.django._commands import EventConnections, RemoteCommand
from tocsin.remote import AsyncTransport, Remote, add_propagator
from tocsin.remote._cli import run_worker, worker_arguments


class Command(RemoteCommand):
    help = (
        "Consume the stream of the Remote named by the TOCSIN_REMOTE setting, as one "
        "consumer of a group, and run its receivers here until SIGTERM or Ctrl-C (the "
        "batch in hand is finished first). The options are those of `tocsin worker`. "
        "Database connections are checked around each event, as around a request."
    )
    capture_output = False  # it logs as it goes

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        worker_arguments(parser)

    def run(self, remote: Remote, options: argparse.Namespace) -> int:
        if isinstance(remote.transport, AsyncTransport):  # Django's ORM stays out of its loop
            return run_worker(remote, options)
        remove = add_propagator(EventConnections())
        try:
            return run_worker(remote, options)
        finally:
            remove()
