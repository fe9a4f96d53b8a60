"""What the ``manage.py tocsin_*`` commands share: the ``tocsin`` command's
own arguments and code (tocsin.remote._cli), run on the Remote that the
``TOCSIN_REMOTE`` setting names."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import close_old_connections

from ...remote._cli import UsageError
from ...remote._remote import Remote
from ._settings import remote_from_settings

if TYPE_CHECKING:

    class BaseCommand:
        """What the commands use of ``django.core.management.BaseCommand``, for type
        checkers: Django ships no type hints, and a base class of unknown type would
        leave the commands untyped."""

        help: str
        stdout: Any

        def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

else:
    from django.core.management.base import BaseCommand

__all__ = ["EventConnections", "RemoteCommand"]


class EventConnections:
    """Django's per-request database hygiene, per event, in a worker.

    Django closes connections that are broken (a database restart) or past
    ``CONN_MAX_AGE`` before and after each request (``close_old_connections``
    on ``request_started`` and ``request_finished``); a worker has no requests,
    so it does the same around each event it runs. A propagator, because its
    ``extract()`` is what a worker enters around every event; it carries nothing.
    """

    def inject(self, carrier: dict[str, str]) -> None:
        pass

    @contextlib.contextmanager
    def extract(self, carrier: Mapping[str, str]) -> Iterator[None]:
        close_old_connections()
        try:
            yield
        finally:
            close_old_connections()


class RemoteCommand(BaseCommand):
    """A ``tocsin`` subcommand as a management command: subclasses add its
    arguments (``add_arguments()``) and run it (``run()``)."""

    # Print what the command prints through self.stdout (call_command(stdout=...)
    # sees it); not for the worker, which logs as it goes.
    capture_output: ClassVar[bool] = True

    def run(self, remote: Remote, options: argparse.Namespace) -> int:
        """Run the command on *remote*; return its exit status."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            remote = remote_from_settings()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error
        run = self.run
        output = io.StringIO()
        try:
            if self.capture_output:
                with contextlib.redirect_stdout(output):
                    code = run(remote, argparse.Namespace(**options))
            else:
                code = run(remote, argparse.Namespace(**options))
        except UsageError as error:
            raise CommandError(str(error)) from None
        finally:
            if output.getvalue():
                self.stdout.write(output.getvalue(), ending="")
        if code:
            raise CommandError(f"{self.prog_name()} failed (exit status {code})", returncode=code)

    def prog_name(self) -> str:
        return type(self).__module__.rpartition(".")[2]
