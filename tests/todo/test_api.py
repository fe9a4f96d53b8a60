"""The Todo app's JSON API (``/api``): accounts and the session, the todos, who may
see what, validation, the lockout, and the OpenAPI schema that documents it all."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, Client
from starlette.requests import Request

from tocsin.signals import CLEANSED_SUBSTITUTE, user_logged_in, user_logged_out, user_login_failed
from tocsin.testing import ANY, capture, connected_to
from todo.api import TEXT_SCHEMA
from todo.models import Todo, User, clean_text, is_invisible, text_error
from todo.signals import todo_completed, todo_reopened

WRONG_PASSWORD = "not-the-password-42"
INVISIBLE = "The text has no visible characters: please write something."
TODO_KEYS = {"id", "text", "done", "created_at", "completed_at"}

# Every operation of the API, with the responses it must declare.
OPERATIONS = {
    ("post", "/api/users"): {"201", "409", "422", "429"},
    ("post", "/api/session"): {"200", "401", "422", "429"},
    ("delete", "/api/session"): {"204"},
    ("put", "/api/session/password"): {"200", "401", "403", "422", "429"},
    ("get", "/api/todos"): {"200", "401"},
    ("post", "/api/todos"): {"201", "401", "422"},
    ("get", "/api/todos/{todo_id}"): {"200", "401", "404", "422"},
    ("patch", "/api/todos/{todo_id}"): {"200", "401", "404", "422"},
    ("delete", "/api/todos/{todo_id}"): {"204", "401", "404", "422"},
}


def create_user(client: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/users", json={"username": username, "password": password})


def log_in(client: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/session", json={"username": username, "password": password})


def signed_up(client: Client, username: str) -> int:
    """Create *username* and log *client* in as them; returns the user's id."""
    response = create_user(client, username)
    assert response.status_code == 201, response.text
    assert log_in(client, username).status_code == 200
    user_id: int = response.json()["id"]
    return user_id


def new_todo(client: Client, text: str) -> dict[str, Any]:
    response = client.post("/api/todos", json={"text": text})
    assert response.status_code == 201, response.text
    todo: dict[str, Any] = response.json()
    return todo


def completed_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "todo" and r.getMessage().startswith("Todo completed")
    ]


# -- users and the session -------------------------------------------------------------------


def test_create_a_user(client: Client) -> None:
    with capture(user_logged_in) as logged_in:
        response = create_user(client, "ann")
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "ann"}
    assert isinstance(body["id"], int)
    logged_in.assert_not_sent()  # registering through the API does not log in
    assert client.get("/api/todos").status_code == 401


def test_a_taken_username_is_a_conflict(client: Client) -> None:
    assert create_user(client, "ann").status_code == 201
    response = create_user(client, "ann", "another password")
    assert response.status_code == 409
    assert response.json() == {"detail": "That username is taken."}
    assert log_in(client, "ann").status_code == 200  # the first password still works


@pytest.mark.parametrize(
    "body",
    [
        {"username": "an", "password": PASSWORD},
        {"username": "a" * 41, "password": PASSWORD},
        {"username": "ann smith", "password": PASSWORD},
        {"username": "ann", "password": "short"},
        {"username": "ann", "password": "x" * 129},
        {"username": "ann"},
        {"password": PASSWORD},
        {"username": 42, "password": PASSWORD},
        {},
    ],
    ids=[
        "short-name",
        "long-name",
        "bad-characters",
        "short-password",
        "long-password",
        "no-password",
        "no-username",
        "number",
        "empty",
    ],
)
def test_invalid_users_are_refused(client: Client, body: dict[str, Any]) -> None:
    response = client.post("/api/users", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail
    assert all({"loc", "msg", "type"} <= set(error) for error in detail)
    if "password" in body:
        assert str(body["password"]) not in response.text or body["password"] == PASSWORD


def test_log_in_and_out(client: Client) -> None:
    user_id = create_user(client, "ann").json()["id"]
    with capture(user_logged_in) as logged_in:
        response = log_in(client, "ann")
    assert response.status_code == 200
    assert response.json() == {"id": user_id, "username": "ann"}
    set_cookie = response.headers["set-cookie"].lower()
    assert "todo_session=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    logged_in.assert_sent_once_with(User, request=ANY, user=ANY)
    assert isinstance(logged_in.calls[0].kwargs["request"], Request)
    assert logged_in.calls[0].kwargs["user"].id == user_id
    assert client.get("/api/todos").status_code == 200

    with capture(user_logged_out) as logged_out:
        response = client.delete("/api/session")
    assert response.status_code == 204
    assert response.content == b""
    logged_out.assert_sent_once_with(User, request=ANY, user=ANY)
    assert logged_out.calls[0].kwargs["user"].id == user_id
    assert client.get("/api/todos").status_code == 401


def test_logging_out_when_logged_out_is_fine(client: Client) -> None:
    with capture(user_logged_out) as logged_out:
        response = client.delete("/api/session")
    assert response.status_code == 204
    logged_out.assert_not_sent()


def test_logging_in_again_rotates_the_session(client: Client) -> None:
    create_user(client, "ann")
    log_in(client, "ann")
    first = client.cookies.get("todo_session")
    log_in(client, "ann")
    assert client.cookies.get("todo_session") != first


@pytest.mark.parametrize(
    ("username", "password"),
    [("ann", WRONG_PASSWORD), ("nobody", WRONG_PASSWORD), ("ann", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
def test_wrong_credentials_are_unauthorized(client: Client, username: str, password: str) -> None:
    create_user(client, "ann")
    with capture(user_login_failed) as failed:
        response = log_in(client, username, password)
    assert response.status_code == 401
    assert response.json() == {"detail": "Wrong username or password."}
    failed.assert_sent_once_with(
        "todo.auth",
        credentials={"username": username, "password": CLEANSED_SUBSTITUTE},
        request=ANY,
    )
    if password:
        assert password not in repr(failed.calls)
    assert client.get("/api/todos").status_code == 401


def test_five_failures_lock_the_account(make_client: Callable[[], Client]) -> None:
    create_user(make_client(), "ann")
    attacker = make_client()
    for _ in range(5):
        assert log_in(attacker, "ann", WRONG_PASSWORD).status_code == 401
    owner = make_client()
    with capture(user_logged_in) as logged_in:
        response = log_in(owner, "ann")
    assert response.status_code == 429
    assert response.json()["detail"] == "Too many failed logins: try again in 5 minutes."
    assert 290 <= int(response.headers["retry-after"]) <= 300
    logged_in.assert_not_sent()
    assert owner.get("/api/todos").status_code == 401


def test_a_browser_that_logged_in_before_is_not_locked_out(
    make_client: Callable[[], Client],
) -> None:
    """Someone else's guesses lock unknown browsers out, not the owner's own."""
    owner = make_client()
    create_user(owner, "ann")
    assert log_in(owner, "ann").status_code == 200
    assert owner.delete("/api/session").status_code == 204
    attacker = make_client()
    for _ in range(5):
        assert log_in(attacker, "ann", WRONG_PASSWORD).status_code == 401
    assert log_in(attacker, "ann").status_code == 429
    assert log_in(owner, "ann").status_code == 200


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/todos", None),
        ("POST", "/api/todos", {"text": "x"}),
        ("GET", "/api/todos/1", None),
        ("PATCH", "/api/todos/1", {"done": True}),
        ("DELETE", "/api/todos/1", None),
    ],
)
def test_the_todos_need_a_session(
    make_client: Callable[[], Client], method: str, path: str, body: dict[str, Any] | None
) -> None:
    owner = make_client()
    signed_up(owner, "ann")
    todo = new_todo(owner, "ann's")
    assert todo["id"] == 1
    stranger = make_client()
    response = stranger.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not logged in."}
    assert owner.get("/api/todos/1").json() == todo


def test_a_forged_session_cookie_is_not_a_session(client: Client) -> None:
    client.cookies.set("todo_session", "eyJ1c2VyX2lkIjogMX0=.forged.signature")
    assert client.get("/api/todos").status_code == 401


# -- the todos -------------------------------------------------------------------------------


def test_create_read_update_delete(client: Client) -> None:
    signed_up(client, "ann")
    assert client.get("/api/todos").json() == []

    before = datetime.datetime.now(datetime.UTC)
    created = new_todo(client, "  buy milk  ")
    assert set(created) == TODO_KEYS
    assert created["text"] == "buy milk"
    assert created["done"] is False
    assert created["completed_at"] is None
    created_at = datetime.datetime.fromisoformat(created["created_at"])
    assert created_at.utcoffset() == datetime.timedelta(0)
    assert before - datetime.timedelta(seconds=1) <= created_at
    second = new_todo(client, "file taxes")

    assert client.get("/api/todos").json() == [created, second]  # oldest first
    assert client.get(f"/api/todos/{created['id']}").json() == created

    response = client.patch(f"/api/todos/{created['id']}", json={"text": "buy oat milk"})
    assert response.status_code == 200
    assert response.json() == {**created, "text": "buy oat milk"}

    response = client.delete(f"/api/todos/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/todos/{created['id']}").status_code == 404
    assert client.get("/api/todos").json() == [second]


def test_patch_done_sends_todo_completed_and_logs_after_the_commit(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo")
    signed_up(client, "ann")
    todo = new_todo(client, "water plants")

    logged_at_send: list[list[str]] = []

    def at_send(sender: type[Todo], todo: Todo, **kwargs: object) -> None:
        logged_at_send.append(completed_messages(caplog))

    with (
        capture(todo_completed) as completed,
        capture(todo_reopened) as reopened,
        connected_to(at_send, todo_completed),
    ):
        response = client.patch(f"/api/todos/{todo['id']}", json={"done": True})
    assert response.status_code == 200
    body = response.json()
    assert body["done"] is True
    assert body["completed_at"] is not None
    completed.assert_sent_once_with(Todo, todo=ANY)
    sent = completed.calls[0].kwargs["todo"]
    assert isinstance(sent, Todo)
    assert sent.id == todo["id"]
    reopened.assert_not_sent()
    assert logged_at_send == [[]]  # not logged when sent: the commit had not happened
    assert completed_messages(caplog) == [
        f'Todo completed: "water plants" (id={todo["id"]}, user=ann)'
    ]

    # done again: no change, no signal, no second line
    with capture(todo_completed) as completed:
        response = client.patch(f"/api/todos/{todo['id']}", json={"done": True})
    assert response.json() == body
    completed.assert_not_sent()
    assert len(completed_messages(caplog)) == 1


def test_patch_not_done_sends_todo_reopened(client: Client) -> None:
    signed_up(client, "ann")
    todo = new_todo(client, "water plants")
    client.patch(f"/api/todos/{todo['id']}", json={"done": True})
    with capture(todo_reopened) as reopened, capture(todo_completed) as completed:
        response = client.patch(f"/api/todos/{todo['id']}", json={"done": False})
    assert response.status_code == 200
    assert response.json() == {**todo, "done": False, "completed_at": None}
    reopened.assert_sent_once_with(Todo, todo=ANY)
    completed.assert_not_sent()
    with capture(todo_reopened) as reopened:
        client.patch(f"/api/todos/{todo['id']}", json={"done": False})
    reopened.assert_not_sent()


def test_patch_text_and_done_together(client: Client) -> None:
    signed_up(client, "ann")
    todo = new_todo(client, "draft")
    with capture(todo_completed) as completed:
        response = client.patch(f"/api/todos/{todo['id']}", json={"text": "final", "done": True})
    assert response.status_code == 200
    assert response.json()["text"] == "final"
    assert response.json()["done"] is True
    completed.assert_sent_once()


def test_an_empty_patch_changes_nothing(client: Client) -> None:
    signed_up(client, "ann")
    todo = new_todo(client, "as it is")
    for body in ({}, {"text": None, "done": None}):
        response = client.patch(f"/api/todos/{todo['id']}", json=body)
        assert response.status_code == 200
        assert response.json() == todo


# -- ownership -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PATCH", {"done": True}), ("PATCH", {"text": "bob's now"}), ("DELETE", None)],
    ids=["get", "patch-done", "patch-text", "delete"],
)
def test_another_users_todo_is_not_found(
    make_client: Callable[[], Client], method: str, body: dict[str, Any] | None
) -> None:
    ann, bob = make_client(), make_client()
    signed_up(ann, "ann")
    signed_up(bob, "bob")
    todo = new_todo(ann, "ann's")
    with capture(todo_completed) as completed:
        response = bob.request(method, f"/api/todos/{todo['id']}", json=body)
    assert response.status_code == 404
    assert response.json() == {"detail": "There is no such todo."}
    completed.assert_not_sent()
    assert ann.get(f"/api/todos/{todo['id']}").json() == todo
    assert bob.get("/api/todos").json() == []


@pytest.mark.parametrize("todo_id", [999, 2**31, 2**63, 0, -1])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_missing_todo_is_not_found(client: Client, method: str, todo_id: int) -> None:
    signed_up(client, "ann")
    body = {"done": True} if method == "PATCH" else None
    response = client.request(method, f"/api/todos/{todo_id}", json=body)
    assert response.status_code == 404


@pytest.mark.parametrize("todo_id", ["abc", "1.5", "1e3", str(2**80)])
def test_a_todo_id_that_is_not_an_integer_is_invalid(client: Client, todo_id: str) -> None:
    signed_up(client, "ann")
    response = client.get(f"/api/todos/{todo_id}")
    assert response.status_code in {404, 422}
    assert response.status_code == 422 or todo_id == str(2**80)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "a todo cannot be empty"),
        ({"text": "  \n "}, "a todo cannot be empty"),
        ({"text": "x" * 501}, "A todo is at most 500 characters long; this one has 501."),
        ({"text": "\u200b"}, INVISIBLE),
        ({"text": " \u3164\u200d\ufeff\u2800 "}, INVISIBLE),
        ({"text": "\U000e0020\x01\x7f"}, INVISIBLE),
        ({"text": None}, None),
        ({"text": 42}, None),
        ({}, None),
    ],
    ids=[
        "empty",
        "blank",
        "501-characters",
        "zero-width-space",
        "fillers-and-joiners",
        "tags-and-controls",
        "null",
        "number",
        "missing",
    ],
)
def test_bad_text_is_unprocessable(
    client: Client, body: dict[str, Any], message: str | None
) -> None:
    signed_up(client, "ann")
    response = client.post("/api/todos", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    if message is not None:
        assert any(message in error["msg"] for error in detail), detail
    assert client.get("/api/todos").json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "x" * 501},
        {"text": "\u2060\u00ad"},
        {"done": "maybe"},
        {"done": []},
        {"text": ["a"]},
    ],
    ids=["empty-text", "long-text", "invisible-text", "done-string", "done-list", "text-list"],
)
def test_bad_patches_are_unprocessable(client: Client, body: dict[str, Any]) -> None:
    signed_up(client, "ann")
    todo = new_todo(client, "as it is")
    with capture(todo_completed) as completed:
        response = client.patch(f"/api/todos/{todo['id']}", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    completed.assert_not_sent()
    assert client.get(f"/api/todos/{todo['id']}").json() == todo


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"], ids=["nul", "lone-surrogate"])
def test_text_no_database_can_store_is_refused_or_replaced(client: Client, text: str) -> None:
    signed_up(client, "ann")
    response = client.post(
        "/api/todos",
        content=json.dumps({"text": text}).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in {201, 422}
    if response.status_code == 201:
        assert response.json()["text"] == "a\ufffdb"


def test_invisible_characters_beside_a_visible_one_are_fine(client: Client) -> None:
    signed_up(client, "ann")
    assert new_todo(client, "\u200bmilk\u200d")["text"] == "\u200bmilk\u200d"


def test_the_schema_pattern_accepts_the_texts_the_api_accepts() -> None:
    """Schemathesis makes its valid todos from TEXT_SCHEMA's pattern: it must accept
    a one-character text exactly when the API does, for every character (a lone
    surrogate aside: JSON can send one, and the API replaces or refuses it). The
    pattern lists invisible characters of planes 0, 1 and 14 only: there are no
    others."""
    assert isinstance(TEXT_SCHEMA["pattern"], str)
    pattern = re.compile(TEXT_SCHEMA["pattern"])
    for plane in (0, 1, 14):
        for code in range(plane << 16, (plane + 1) << 16):
            if 0xD800 <= code <= 0xDFFF:
                continue
            text = chr(code)
            accepted = text_error(clean_text(text)) is None
            assert bool(pattern.search(text)) is accepted, hex(code)
    others = (code for code in range(0x20000, sys.maxunicode + 1) if code >> 16 != 14)
    assert not any(is_invisible(chr(code)) for code in others)
    assert pattern.search("  \u200b x\u200d  ")
    assert not pattern.search("  \u200b\u3164  ")
    assert pattern.search("x" * 500)
    assert not pattern.search("x" * 501)


def test_500_characters_are_fine(client: Client) -> None:
    signed_up(client, "ann")
    assert new_todo(client, "ü" * 500)["text"] == "ü" * 500


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"text=forged", "application/x-www-form-urlencoded"),
        (b"text=forged", "text/plain"),
        (b'{"text": "forged"}', "text/plain"),
    ],
    ids=["form", "text-plain", "json-as-text-plain"],
)
def test_unsafe_calls_must_send_json(client: Client, content: bytes, content_type: str) -> None:
    """The API's CSRF defence: a cross-site form cannot send application/json."""
    signed_up(client, "ann")
    response = client.post("/api/todos", content=content, headers={"content-type": content_type})
    assert response.status_code == 415
    assert "detail" in response.json()
    assert client.get("/api/todos").json() == []


def test_malformed_json_is_unprocessable(client: Client) -> None:
    signed_up(client, "ann")
    for content in (b"{", b"[]", b"null", b'"text"', b"\xff"):
        response = client.post(
            "/api/todos", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, content


# -- the OpenAPI schema ----------------------------------------------------------------------


def test_the_schema_lists_every_api_operation_with_its_responses(client: Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    found = {
        (method, path): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert set(found) == set(OPERATIONS)  # the API, and not the pages
    for operation, responses in OPERATIONS.items():
        assert responses <= found[operation], operation


def test_the_schema_describes_the_bodies(client: Client) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    def resolve(reference: dict[str, Any]) -> dict[str, Any]:
        name = reference["$ref"].rsplit("/", 1)[-1]
        resolved: dict[str, Any] = components[name]
        return resolved

    paths = schema["paths"]
    todo_out = resolve(
        paths["/api/todos/{todo_id}"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]
    )
    assert set(todo_out["properties"]) == TODO_KEYS
    assert set(todo_out["required"]) == TODO_KEYS
    for path, item in paths.items():
        for method, operation in item.items():
            for status, declared in operation["responses"].items():
                if status in {"204"}:
                    continue
                assert "content" in declared, (method, path, status)
                body_schema = declared["content"]["application/json"]["schema"]
                assert body_schema, (method, path, status)
                if status in {"401", "404", "409", "429"}:
                    assert resolve(body_schema)["properties"]["detail"]["type"] == "string"


def test_the_api_documents_its_csrf_defence_and_cookie(client: Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "SameSite=Lax" in schema["info"]["description"]
    assert "application/json" in schema["info"]["description"]
    schemes = schema["components"]["securitySchemes"]
    assert any(
        scheme.get("type") == "apiKey"
        and scheme.get("in") == "cookie"
        and scheme.get("name") == "todo_session"
        for scheme in schemes.values()
    )


def test_the_docs_page_is_served(client: Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
