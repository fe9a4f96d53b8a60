"""What the ``manage.py tocsin_*`` commands share: the ``tocsin`` command's
own arguments and code (tocsin.remote._cli), run on the Remote that the
``TOCSIN_REMOTE`` setting names."""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ...remote._cli import UsageError
from ...remote._remote import Remote
from ._settings import remote_from_settings

__all__ = ["RemoteCommand"]


class RemoteCommand(BaseCommand):  # type: ignore[misc]  # Django has no type hints
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
