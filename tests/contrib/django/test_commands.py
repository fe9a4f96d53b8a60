"""``manage.py tocsin_worker``, ``tocsin_status`` and ``tocsin_dead_letters``: the
``tocsin`` command's code on the Remote that ``TOCSIN_REMOTE`` names."""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import BaseCommand, CommandError, call_command
from django.db import connections
from django.test import override_settings

from _services import redis_or_skip
from tocsin import Signal
from tocsin.contrib.django.management.commands import (
    tocsin_dead_letters,
    tocsin_status,
    tocsin_worker,
)
from tocsin.contrib.django.models import OutboxEntry
from tocsin.contrib.django.remote import remote_from_settings
from tocsin.remote import MemoryTransport, Remote, Worker

from ._databases import extra_database

job_done = Signal()
STREAM = "django-commands"
REMOTE = Remote(MemoryTransport(), stream=STREAM)
NOT_A_REMOTE = object()
COMMANDS = (tocsin_worker.Command, tocsin_status.Command, tocsin_dead_letters.Command)
PROJECT = Path(__file__).parent / "remote_project"


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    """A new REMOTE for the test, publishing job_done, named by TOCSIN_REMOTE."""
    remote = Remote(MemoryTransport(), stream=STREAM)
    monkeypatch.setattr(sys.modules[__name__], "REMOTE", remote)
    remote.publish(job_done)
    with override_settings(TOCSIN_REMOTE=f"{__name__}:REMOTE"):
        yield remote
    remote.disconnect()
    job_done.receivers = []


def run(command: type[BaseCommand], *args: str) -> str:
    out = StringIO()
    call_command(command(), *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_says_when_the_setting_is_missing(command: type[BaseCommand]) -> None:
    """A CommandError naming the setting and its form."""
    with pytest.raises(CommandError, match=r'TOCSIN_REMOTE setting is missing.*"module:attribute"'):
        run(command)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("myproject.remote", 'must be "module:attribute"'),
        (42, 'must be "module:attribute"'),
        ("no_such_module_for_tocsin:remote", "cannot import 'no_such_module_for_tocsin'"),
        (f"{__name__}:NOT_A_REMOTE", "is not a tocsin.remote.Remote"),
        (f"{__name__}:MISSING", "is not a tocsin.remote.Remote"),
    ],
)
def test_a_wrong_setting_is_a_clear_error(value: Any, message: str) -> None:
    """Malformed, not importable, or not a Remote."""
    with override_settings(TOCSIN_REMOTE=value), pytest.raises(CommandError, match=message):
        run(tocsin_status.Command)


def test_the_setting_may_hold_the_remote_itself() -> None:
    """TOCSIN_REMOTE = remote works too (a settings module that builds it)."""
    with override_settings(TOCSIN_REMOTE=REMOTE):
        assert remote_from_settings() is REMOTE


def test_status_prints_the_stream(remote: Remote) -> None:
    """tocsin_status: the length, the groups, the dead letters; --json too."""
    job_done.send(None, job=1)
    job_done.send(None, job=2)
    text = run(tocsin_status.Command)
    assert text.splitlines()[0] == f"stream {STREAM}: 2 event(s)"
    assert "no consumer group yet" in text
    report = json.loads(run(tocsin_status.Command, "--json"))
    assert (report["stream"], report["length"], report["dead_letters"]) == (STREAM, 2, 0)


def test_dead_letters_are_listed_replayed_and_discarded(remote: Remote) -> None:
    """tocsin_dead_letters lists them with their errors; --replay-all, --discard-all."""

    def fail(sender: object, **kwargs: object) -> None:
        raise RuntimeError("the printer is on fire")

    job_done.send(None, job=1)  # published; the worker's receiver fails
    job_done.connect(fail, weak=False)
    Worker(remote, block=0.01, max_attempts=1).run_once()
    listed = run(tocsin_dead_letters.Command)
    assert listed.splitlines()[0] == f"{STREAM}:dead: 1 dead letter(s)"
    assert "the printer is on fire" in listed
    [letter] = json.loads(run(tocsin_dead_letters.Command, "--json"))["letters"]
    assert letter["signal"] == f"{__name__}.job_done"
    assert run(tocsin_dead_letters.Command, "--replay-all").startswith("replayed 1 dead letter")
    Worker(remote, block=0.01, max_attempts=1).run_once()  # fails again
    assert run(tocsin_dead_letters.Command, "--discard-all").startswith("discarded 1 dead letter")
    assert run(tocsin_dead_letters.Command).splitlines()[0].endswith(": 0 dead letter(s)")


def test_a_usage_error_is_a_command_error(remote: Remote) -> None:
    """What the tocsin command refuses, the management command refuses the same way."""
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        run(tocsin_dead_letters.Command, "--limit", "0")
    with pytest.raises(CommandError, match="unknown log level 'LOUD'"):
        run(tocsin_worker.Command, "--log-level", "LOUD")


def test_the_worker_runs_the_receivers_until_sigterm(remote: Remote) -> None:
    """tocsin_worker consumes the stream with the tocsin worker's options."""
    handled: list[object] = []

    def on_job(sender: object, **kwargs: object) -> None:
        handled.append(kwargs["job"])
        if len(handled) == 3:
            os.kill(os.getpid(), signals.SIGTERM)  # what a deployment does to stop it

    for job in range(3):
        job_done.send(None, job=job)
    job_done.connect(on_job, weak=False)
    run(tocsin_worker.Command, "--block", "0.05", "--group", "django", "--log-level", "WARNING")
    assert handled == [0, 1, 2]
    assert json.loads(run(tocsin_status.Command, "--json"))["groups"][0]["name"] == "django"


def test_the_worker_closes_obsolete_connections_around_each_event(
    remote: Remote, tmp_path: Path
) -> None:
    """As Django does around a request: with CONN_MAX_AGE = 0, the connection a
    receiver opened is closed once its event is done (a plain Worker leaves it open)."""
    with extra_database("sqlite", tmp_path, (OutboxEntry,)) as alias:
        database = connections[alias]
        opened: list[bool] = []

        def on_job(sender: object, **kwargs: object) -> None:
            OutboxEntry.objects.using(alias).count()
            opened.append(database.connection is not None)
            if kwargs["job"] == 1:
                os.kill(os.getpid(), signals.SIGTERM)

        job_done.send(None, job=0)
        job_done.connect(on_job, weak=False)
        Worker(remote, block=0.01).run_once()
        assert opened == [True]
        assert database.connection is not None  # a plain worker leaves it
        job_done.disconnect(on_job)
        job_done.send(None, job=1)
        job_done.connect(on_job, weak=False)
        run(tocsin_worker.Command, "--block", "0.05", "--log-level", "WARNING")
        assert opened == [True, True]
        assert database.connection is None  # closed after the event, as after a request


def test_the_worker_rejects_bad_options_with_its_exit_status(remote: Remote) -> None:
    """A worker option out of range: the worker's message, exit status 2."""
    with pytest.raises(CommandError) as raised:
        run(tocsin_worker.Command, "--batch", "0", "--log-level", "WARNING")
    assert raised.value.returncode == 2


# -- a project, a real worker, real Redis ------------------------------------------------


class Project:
    """The test project (remote_project/) in subprocesses, on a SQLite file."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.out = tmp_path / "received.jsonl"
        self.stream = f"tocsin:test-django:{uuid.uuid4().hex}"
        self.redis_url = redis_url
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT.parent), *sys.path]),
            "DJANGO_SETTINGS_MODULE": "remote_project.settings",
            "TOCSIN_TEST_DB": str(tmp_path / "db.sqlite3"),
            "TOCSIN_TEST_STREAM": self.stream,
            "TOCSIN_TEST_OUT": str(self.out),
            "TOCSIN_REDIS_URL": redis_url,
        }

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def shell(self, code: str) -> None:
        done = self.manage("shell", "-c", code)
        assert done.returncode == 0, done.stderr

    def worker(self) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "django", "tocsin_worker", "--block", "0.1"]
        command += ["--relay-every", "0.2", "--log-level", "WARNING"]
        return subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def received(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.out.read_text().splitlines() if self.out.exists() else []
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"the worker received {self.out.exists() and self.out.read_text()}")

    def delete_streams(self) -> None:
        import redis

        with redis.Redis.from_url(self.redis_url) as client:
            client.delete(self.stream, f"{self.stream}:dead")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project(tmp_path, redis_or_skip())
    migrated = project.manage("migrate", "--run-syncdb", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    yield project
    project.delete_streams()


def test_the_app_migration_matches_its_model(project: Project) -> None:
    """makemigrations finds nothing to add for the tocsin app."""
    done = project.manage("makemigrations", "tocsin", "--check", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_real_worker_loads_what_the_outbox_published(project: Project) -> None:
    """Saved in an atomic block, published after the commit through the outbox,
    loaded by the worker that manage.py tocsin_worker runs; a row deleted before
    the worker ran arrives as its ModelKey."""
    project.shell(
        "from django.db import transaction\n"
        "from remote_project.shop.models import Order\n"
        "with transaction.atomic():\n"
        "    Order.objects.create(customer='Ada')\n"
        "    gone = Order.objects.create(customer='Bob')\n"
        "gone.delete()\n"
        "from tocsin.contrib.django.models import OutboxEntry\n"
        "assert OutboxEntry.objects.count() == 0, 'published after the commit'\n"
    )
    worker = project.worker()
    try:
        first, second = project.received(2)
    finally:
        worker.send_signal(signals.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert first == {
        "sender": "shop.Order",
        "created": True,
        "using": "default",
        "pk": 1,
        "customer": "Ada",
        "pid": worker.pid,
    }
    assert second == {"sender": "shop.Order", "created": True, "using": "default", "missing": 2}
    status = project.manage("tocsin_status", "--json")
    report = json.loads(status.stdout)
    assert (report["groups"][0]["pending"], report["dead_letters"]) == (0, 0)


def test_a_real_worker_relays_what_a_process_left_in_the_outbox(project: Project) -> None:
    """Redis unreachable at the commit: the row stays; the worker's relay publishes it."""
    project.env["TOCSIN_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    project.shell(
        "from django.db import transaction\n"
        "from remote_project.shop.models import Order\n"
        "with transaction.atomic():\n"
        "    Order.objects.create(customer='Cy')\n"
        "from tocsin.contrib.django.models import OutboxEntry\n"
        "assert OutboxEntry.objects.count() == 1\n"
    )
    project.env["TOCSIN_REDIS_URL"] = project.redis_url
    worker = project.worker()
    try:
        [got] = project.received(1)
    finally:
        worker.send_signal(signals.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert got["customer"] == "Cy"
    project.shell(
        "from tocsin.contrib.django.models import OutboxEntry\n"
        "assert OutboxEntry.objects.count() == 0\n"
    )
