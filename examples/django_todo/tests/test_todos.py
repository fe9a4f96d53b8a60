"""The Todo example, tested with Django's TestCase and with pytest-django, and
tocsin's test helpers in both."""

from __future__ import annotations

import json
import logging
from io import StringIO
from typing import Any
from unittest.mock import Mock

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.db.models.signals import post_save
from django.test import Client, TestCase, TransactionTestCase
from todos.models import Todo
from todos.receivers import email_owner
from todos.signals import todo_completed

import tocsin
from tocsin.pytest_plugin import SignalCaptureFactory
from tocsin.testing import capture, connected_to, muted


class MarkAsDoneTests(TestCase):
    """Django's TestCase: each test in a transaction that is rolled back."""

    def test_the_signals_are_tocsins(self) -> None:
        assert isinstance(todo_completed, tocsin.Signal)
        assert isinstance(post_save, tocsin.Signal)

    def test_mark_as_done_sends_todo_completed(self) -> None:
        todo = Todo.objects.create(title="water the plants")
        with capture(todo_completed) as sent:
            assert todo.mark_as_done()
            assert not todo.mark_as_done()  # done already: nothing sent
        sent.assert_sent_once_with(Todo, todo=todo)

    def test_the_receiver_logs_the_item(self) -> None:
        todo = Todo.objects.create(title="water the plants")
        with self.assertLogs("todos", logging.INFO) as logs:
            todo.mark_as_done()
        assert logs.output == [f"INFO:todos:Todo #{todo.pk} completed: water the plants"]

    def test_the_email_waits_for_the_commit(self) -> None:
        """The test's transaction never commits: captureOnCommitCallbacks() runs
        what the commit would run, on-commit receivers included."""
        todo = Todo.objects.create(title="water the plants")
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            todo.mark_as_done()
        assert len(callbacks) == 1
        assert mail.outbox == []
        with self.captureOnCommitCallbacks(execute=True):
            Todo.objects.create(title="feed the cat").mark_as_done()
        assert [message.subject for message in mail.outbox] == ["Done: feed the cat"]

    def test_muting_djangos_post_save(self) -> None:
        """muted() in a TestCase: no receiver of post_save runs, the app's signal's do."""
        index = Mock()
        with connected_to(index, post_save, sender=Todo):
            with muted(post_save), capture(post_save) as saved, self.assertLogs("todos"):
                Todo.objects.create(title="water the plants").mark_as_done()
            index.assert_not_called()
            saved.assert_sent_times(2)  # created, then marked done
            Todo.objects.create(title="feed the cat")
            index.assert_called_once()


class CommitTests(TransactionTestCase):
    """Django's TransactionTestCase: the database really commits, so the on-commit
    receiver runs at the end of mark_as_done()'s transaction."""

    def test_the_commit_sends_the_email(self) -> None:
        todo = Todo.objects.create(title="water the plants")
        with capture(todo_completed) as sent:
            todo.mark_as_done()
        sent.assert_sent_once_with(Todo, todo=todo)
        assert [message.subject for message in mail.outbox] == ["Done: water the plants"]


# -- pytest-django ------------------------------------------------------------------------


@pytest.mark.django_db
def test_fixtures_capture_the_send(
    signal_capture: SignalCaptureFactory, django_capture_on_commit_callbacks: Any
) -> None:
    sent = signal_capture(todo_completed, sender=Todo)
    with django_capture_on_commit_callbacks(execute=True):
        todo = Todo.objects.create(title="water the plants")
        todo.mark_as_done()
    sent.assert_sent_once_with(Todo, todo=todo)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_on_commit_receivers_with_pytest_djangos_fixture(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Todo.objects.create(title="water the plants").mark_as_done()
    assert len(callbacks) == 1
    assert [message.subject for message in mail.outbox] == ["Done: water the plants"]


def mark_then_fail(todo: Todo) -> None:
    with transaction.atomic():
        todo.mark_as_done()
        raise LookupError("the cat ran away")


@pytest.mark.django_db(transaction=True)
def test_a_real_commit_emails_and_a_rollback_does_not() -> None:
    """transactional_db: the database really commits, and rolls back."""
    todo = Todo.objects.create(title="water the plants")
    todo.mark_as_done()
    assert len(mail.outbox) == 1

    other = Todo.objects.create(title="feed the cat")
    with pytest.raises(LookupError):
        mark_then_fail(other)
    assert len(mail.outbox) == 1
    other.refresh_from_db()
    assert not other.done


@pytest.mark.django_db
def test_the_views_add_and_complete(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "todos")
    assert client.post("/", {"title": "water the plants"}).status_code == 302
    todo = Todo.objects.get()
    assert b"water the plants" in client.get("/").content
    assert client.post(f"/{todo.pk}/done/").status_code == 302
    todo.refresh_from_db()
    assert todo.done
    assert caplog.messages == [f"Todo #{todo.pk} completed: water the plants"]


@pytest.mark.django_db
def test_the_admin_action_marks_done(admin_client: Client) -> None:
    todos = [Todo.objects.create(title=title) for title in ("a", "b")]
    with capture(todo_completed) as sent:
        response = admin_client.post(
            "/admin/todos/todo/",
            {"action": "mark_as_done", "_selected_action": [t.pk for t in todos]},
            follow=True,
        )
    assert b"2 todos marked as done." in response.content
    sent.assert_sent_times(2)


def test_tocsin_signals_lists_the_app_receivers() -> None:
    out = StringIO()
    call_command("tocsin_signals", "--json", "--app", "todos", stdout=out)
    [signal] = json.loads(out.getvalue())["signals"]
    assert signal["name"] == "todos.signals.todo_completed"
    assert [(r["qualname"], r["on_commit"]) for r in signal["receivers"]] == [
        ("log_completion", False),
        ("email_owner", True),
    ]
    assert email_owner.__name__ == "email_owner"


@pytest.mark.django_db
def test_the_migrations_are_up_to_date() -> None:
    call_command("makemigrations", "todos", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db
@pytest.mark.skipif(not settings.TOOLBAR, reason="django-debug-toolbar is not installed")
def test_the_toolbar_panel_shows_the_send(client: Client, settings: Any) -> None:
    """With DEBUG on, the page has the toolbar, and tocsin's panel the request's sends:
    todo_completed with its receivers, and the email waiting for a commit that
    the test's transaction never makes."""
    from debug_toolbar.store import get_store

    settings.DEBUG = True
    todo = Todo.objects.create(title="water the plants")
    response = client.post(f"/{todo.pk}/done/", follow=False)
    assert response.status_code == 302
    client.get("/")  # the page, with the toolbar: the store keeps both requests
    done_request = list(get_store().request_ids())[-2]
    panel = client.get(
        "/__debug__/render_panel/", {"request_id": done_request, "panel_id": "SentSignalsPanel"}
    ).json()["content"]
    assert "todos.signals.todo_completed" in panel
    assert "todos.receivers.log_completion" in panel
    assert "todos.receivers.email_owner</code>: waiting for the commit" in panel
