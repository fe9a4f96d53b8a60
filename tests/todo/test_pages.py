"""The Todo app's pages, through HTTP: accounts, CSRF, the session cookie, the todo
forms, validation, ownership, the lockout, and the DOM contract.

Every request goes through the ``client`` fixture (the app in process, with a
browser's cookie jar); each extra browser is a ``make_client()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http.cookies import SimpleCookie

import httpx
import pytest
from conftest import (
    PASSWORD,
    Client,
    Element,
    add_todo,
    csrf_token,
    login,
    logout,
    parse_html,
    register,
    todo_ids,
)
from fastapi import FastAPI
from starlette.requests import Request

from tocsin.signals import CLEANSED_SUBSTITUTE, user_logged_in, user_logged_out, user_login_failed
from tocsin.testing import ANY, capture
from todo.models import Todo, User

SESSION_COOKIE = "todo_session"
WRONG_PASSWORD = "not-the-password-42"
INVISIBLE = "The text has no visible characters: please write something."
LOCKED = re.compile(r"Too many failed logins: try again in [45] minutes\.")


def page_of(response: httpx.Response) -> Element:
    return parse_html(response.text)


def errors(response: httpx.Response) -> list[str]:
    """The text of the page's ``.error`` elements."""
    return [element.text.strip() for element in page_of(response).select(".error")]


def session_cookie(client: Client) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def set_cookie(response: httpx.Response) -> SimpleCookie:
    """The session cookie the response sets (an assertion error if none)."""
    headers = [v for v in response.headers.get_list("set-cookie") if SESSION_COOKIE in v]
    assert headers, f"no {SESSION_COOKIE} cookie set"
    cookie = SimpleCookie()
    cookie.load(headers[-1])
    return cookie


def post_form(client: Client, path: str, **fields: str) -> httpx.Response:
    """POST a form with the session's CSRF token."""
    return client.post(path, data={**fields, "csrf_token": csrf_token(client, "/todos")})


def todo_item(client: Client, todo_id: int) -> Element:
    return parse_html(client.get("/todos").text).select_one(f'li.todo[data-id="{todo_id}"]')


# -- the front door --------------------------------------------------------------------------


def test_the_root_redirects_to_the_login_page_when_logged_out(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_the_root_redirects_to_the_todos_when_logged_in(client: Client) -> None:
    register(client, "ann")
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"


def test_the_todos_page_needs_a_login(client: Client) -> None:
    response = client.get("/todos")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


# -- registering -----------------------------------------------------------------------------


def test_registering_logs_in_and_sends_user_logged_in(client: Client) -> None:
    with capture(user_logged_in) as logged_in:
        response = register(client, "ann")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    logged_in.assert_sent_once_with(User, request=ANY, user=ANY)
    (call,) = logged_in.calls
    assert isinstance(call.kwargs["request"], Request)
    assert isinstance(call.kwargs["user"], User)
    assert call.kwargs["user"].username == "ann"

    page = client.get("/todos")
    assert page.status_code == 200
    assert page_of(page).select_one(".account .username").text == "ann"


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("an", PASSWORD, "The username must be 3 to 40 characters long."),
        ("a" * 41, PASSWORD, "The username must be 3 to 40 characters long."),
        ("ann smith", PASSWORD, "The username may only contain"),
        ("ann", "short", "The password must be 8 to 128 characters long."),
        ("", "", "The username must be"),
    ],
    ids=["short-name", "long-name", "bad-characters", "short-password", "empty"],
)
def test_registering_with_bad_input_says_why(
    client: Client, username: str, password: str, message: str
) -> None:
    with capture(user_logged_in) as logged_in:
        response = register(client, username, password)
    assert response.status_code == 422
    (error,) = errors(response)
    assert error.startswith(message)
    assert page_of(response).select("form#register-form")
    logged_in.assert_not_sent()
    assert client.get("/todos").status_code == 303  # not logged in


def test_registering_a_taken_username_is_a_conflict(make_client: Callable[[], Client]) -> None:
    first, second = make_client(), make_client()
    assert register(first, "ann").status_code == 303
    response = register(second, "ann", "another password")
    assert response.status_code == 409
    assert errors(response) == ["That username is taken: choose another one."]
    # the original account still logs in with its own password
    logout(first)
    assert login(first, "ann").status_code == 303


def test_the_register_form_does_not_echo_the_password(client: Client) -> None:
    response = register(client, "an", "my very secret password")
    assert response.status_code == 422
    assert "my very secret password" not in response.text


# -- logging in and out ----------------------------------------------------------------------


def test_login_sends_user_logged_in(client: Client) -> None:
    register(client, "ann")
    logout(client)
    with capture(user_logged_in) as logged_in, capture(user_login_failed) as failed:
        response = login(client, "ann")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    logged_in.assert_sent_once_with(User, request=ANY, user=ANY)
    assert logged_in.calls[0].kwargs["user"].username == "ann"
    assert isinstance(logged_in.calls[0].kwargs["request"], Request)
    failed.assert_not_sent()
    assert client.get("/todos").status_code == 200


def test_logout_sends_user_logged_out_and_ends_the_session(client: Client) -> None:
    register(client, "ann")
    with capture(user_logged_out) as logged_out:
        response = logout(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    logged_out.assert_sent_once_with(User, request=ANY, user=ANY)
    (call,) = logged_out.calls
    assert isinstance(call.kwargs["request"], Request)
    assert call.kwargs["user"].username == "ann"
    assert client.get("/todos").headers["location"] == "/login"


def test_the_login_page_redirects_a_logged_in_user(client: Client) -> None:
    register(client, "ann")
    for path in ("/login", "/register"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/todos"


@pytest.mark.parametrize(
    ("username", "password"),
    [("ann", WRONG_PASSWORD), ("nobody", WRONG_PASSWORD), ("ann", ""), ("", WRONG_PASSWORD)],
    ids=["wrong-password", "unknown-user", "no-password", "no-username"],
)
def test_a_failed_login_sends_user_login_failed_with_cleansed_credentials(
    make_client: Callable[[], Client], username: str, password: str
) -> None:
    register(make_client(), "ann")
    client = make_client()
    with capture(user_login_failed) as failed, capture(user_logged_in) as logged_in:
        response = login(client, username, password)
    assert response.status_code == 401
    assert errors(response) == ["Wrong username or password."]
    failed.assert_sent_once_with(
        "todo.auth",
        credentials={"username": username, "password": CLEANSED_SUBSTITUTE},
        request=ANY,
    )
    assert isinstance(failed.calls[0].kwargs["request"], Request)
    logged_in.assert_not_sent()
    if password:
        assert password not in repr(failed.calls)
        assert password not in response.text
    assert client.get("/todos").status_code == 303


def test_a_failed_login_keeps_the_username_in_the_form(client: Client) -> None:
    register(client, "ann")
    logout(client)
    response = login(client, "ann", WRONG_PASSWORD)
    form = page_of(response).select_one("form#login-form")
    assert form.select_one("input[name=username]").attrs.get("value") == "ann"
    assert WRONG_PASSWORD not in response.text


# -- the lockout -----------------------------------------------------------------------------


def test_five_failed_logins_lock_the_account(make_client: Callable[[], Client]) -> None:
    register(make_client(), "ann")
    attacker = make_client()
    for _ in range(5):
        assert login(attacker, "ann", WRONG_PASSWORD).status_code == 401
    # now even the right password, from another browser, is refused
    owner = make_client()
    with capture(user_logged_in) as logged_in:
        response = login(owner, "ann")
    assert response.status_code == 429
    (error,) = errors(response)
    assert LOCKED.fullmatch(error), error
    logged_in.assert_not_sent()
    assert owner.get("/todos").status_code == 303


def test_four_failed_logins_do_not_lock(client: Client) -> None:
    register(client, "ann")
    logout(client)
    for _ in range(4):
        assert login(client, "ann", WRONG_PASSWORD).status_code == 401
    assert login(client, "ann").status_code == 303


def test_a_successful_login_forgets_the_failures(client: Client) -> None:
    register(client, "ann")
    logout(client)
    for _ in range(4):
        login(client, "ann", WRONG_PASSWORD)
    assert login(client, "ann").status_code == 303
    logout(client)
    for _ in range(4):
        assert login(client, "ann", WRONG_PASSWORD).status_code == 401
    assert login(client, "ann").status_code == 303


def test_unknown_users_are_throttled_like_real_ones_and_lock_nobody(client: Client) -> None:
    """No answer tells whether an account exists: "nobody" is refused after five
    failures, as "ann" would be; ann's own browser still logs in."""
    register(client, "ann")
    logout(client)
    for _ in range(5):
        assert login(client, "nobody", WRONG_PASSWORD).status_code == 401
    assert login(client, "nobody", WRONG_PASSWORD).status_code == 429
    assert login(client, "ann").status_code == 303


# -- CSRF ------------------------------------------------------------------------------------


def csrf_targets(client: Client) -> dict[str, dict[str, str]]:
    """Every POST form of the app, with fields that would be accepted but for the token."""
    todo_id = add_todo(client, "keep me")
    return {
        "/todos": {"text": "forged"},
        f"/todos/{todo_id}/edit": {"text": "forged"},
        f"/todos/{todo_id}/done": {},
        f"/todos/{todo_id}/undone": {},
        f"/todos/{todo_id}/delete": {},
        "/logout": {},
        "/login": {"username": "ann", "password": PASSWORD},
        "/register": {"username": "bob", "password": PASSWORD},
    }


@pytest.mark.parametrize(
    "token", [None, "", "forged", "x" * 43], ids=["missing", "empty", "wrong", "same-length"]
)
def test_forms_without_the_right_csrf_token_are_refused(
    make_client: Callable[[], Client], token: str | None
) -> None:
    client = make_client()
    register(client, "ann")
    targets = csrf_targets(client)
    (todo_id,) = todo_ids(client)
    for path, fields in targets.items():
        data = fields if token is None else {**fields, "csrf_token": token}
        with capture(user_logged_out) as logged_out, capture(user_logged_in) as logged_in:
            response = client.post(path, data=data)
        assert response.status_code == 403, path
        assert "CSRF check failed" in response.text, path
        logged_out.assert_not_sent()
        logged_in.assert_not_sent()
    # nothing changed: still logged in as ann, the todo as it was, no user bob
    item = todo_item(client, todo_id)
    assert item.select_one(".todo-text").text == "keep me"
    assert "done" not in item.classes
    assert login(make_client(), "bob").status_code == 401


def test_another_sessions_csrf_token_is_refused(make_client: Callable[[], Client]) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    todo_id = add_todo(ann, "mine")
    response = ann.post(f"/todos/{todo_id}/delete", data={"csrf_token": csrf_token(bob)})
    assert response.status_code == 403
    assert todo_ids(ann) == [todo_id]


def test_a_pre_login_csrf_token_is_refused_after_login(client: Client) -> None:
    register(client, "ann")
    logout(client)
    before = csrf_token(client, "/login")
    assert login(client, "ann").status_code == 303
    after = csrf_token(client, "/todos")
    assert after != before
    response = client.post("/todos", data={"text": "x", "csrf_token": before})
    assert response.status_code == 403


def test_every_post_form_carries_the_csrf_token(client: Client) -> None:
    for path in ("/login", "/register"):
        page = page_of(client.get(path))
        token = csrf_token(client, path)
        forms = [f for f in page.select("form") if f.attrs.get("method", "").lower() == "post"]
        assert forms
        for form in forms:
            field = form.select_one("input[name=csrf_token]")
            assert field.attrs.get("type") == "hidden"
            assert field.attrs.get("value") == token
    register(client, "ann")
    add_todo(client, "one")
    done = add_todo(client, "two")
    post_form(client, f"/todos/{done}/done")
    page = page_of(client.get("/todos"))
    token = csrf_token(client, "/todos")
    forms = page.select("form")
    assert len(forms) >= 1 + 1 + 2 * 3  # logout, add, and three per todo
    for form in forms:
        assert form.attrs.get("method", "").lower() == "post"
        assert form.select_one("input[name=csrf_token]").attrs.get("value") == token


# -- the session cookie ----------------------------------------------------------------------


def test_the_session_cookie_is_httponly_and_samesite_lax(client: Client) -> None:
    response = client.get("/login")
    cookie = set_cookie(response)[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"

    token = csrf_token(client, "/register")
    response = client.post(
        "/register", data={"username": "ann", "password": PASSWORD, "csrf_token": token}
    )
    cookie = set_cookie(response)[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"


def test_the_session_is_rotated_on_login(make_client: Callable[[], Client]) -> None:
    """Logging in gives a new session: a new cookie, and a new CSRF token; the cookie
    from before the login does not carry the login."""
    register(make_client(), "ann")
    client = make_client()
    anonymous_token = csrf_token(client, "/login")
    anonymous_cookie = session_cookie(client)
    assert anonymous_cookie is not None
    response = client.post(
        "/login", data={"username": "ann", "password": PASSWORD, "csrf_token": anonymous_token}
    )
    assert response.status_code == 303
    logged_in_cookie = session_cookie(client)
    assert logged_in_cookie is not None
    assert logged_in_cookie != anonymous_cookie
    assert csrf_token(client, "/todos") != anonymous_token

    replay = make_client()
    replay.cookies.set(SESSION_COOKIE, anonymous_cookie)
    assert replay.get("/todos").headers["location"] == "/login"


def test_the_session_is_rotated_on_logout(client: Client) -> None:
    register(client, "ann")
    logged_in_token = csrf_token(client, "/todos")
    logged_in_cookie = session_cookie(client)
    logout(client)
    assert session_cookie(client) != logged_in_cookie
    assert csrf_token(client, "/login") != logged_in_token


def test_a_tampered_session_cookie_is_ignored(client: Client) -> None:
    register(client, "ann")
    cookie = session_cookie(client)
    assert cookie is not None
    client.cookies.set(SESSION_COOKIE, cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB"))
    response = client.get("/todos")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


# -- the todo forms --------------------------------------------------------------------------


def test_add_a_todo(client: Client) -> None:
    register(client, "ann")
    response = post_form(client, "/todos", text="  buy milk  ")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    (todo_id,) = todo_ids(client)
    item = todo_item(client, todo_id)
    assert item.select_one(".todo-text").text == "buy milk"  # stripped
    assert "done" not in item.classes


def test_edit_a_todo(client: Client) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "buy milk")
    response = post_form(client, f"/todos/{todo_id}/edit", text="buy oat milk")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    item = todo_item(client, todo_id)
    assert item.select_one(".todo-text").text == "buy oat milk"
    assert item.select_one("form.edit-form input[name=text]").attrs["value"] == "buy oat milk"


def test_done_and_undone(client: Client, app: FastAPI) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "water plants")

    response = post_form(client, f"/todos/{todo_id}/done")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    item = todo_item(client, todo_id)
    assert "done" in item.classes
    assert item.select("form.undone-form button")
    assert not item.select("form.done-form")
    with app.state.database.session() as session:
        todo = session.get(Todo, todo_id)
        assert todo is not None
        assert todo.done is True
        assert todo.completed_at is not None

    response = post_form(client, f"/todos/{todo_id}/undone")
    assert response.status_code == 303
    item = todo_item(client, todo_id)
    assert "done" not in item.classes
    assert item.select("form.done-form button")
    with app.state.database.session() as session:
        todo = session.get(Todo, todo_id)
        assert todo is not None
        assert (todo.done, todo.completed_at) == (False, None)


def test_delete_a_todo(client: Client) -> None:
    register(client, "ann")
    keep = add_todo(client, "keep")
    gone = add_todo(client, "delete me")
    response = post_form(client, f"/todos/{gone}/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/todos"
    assert todo_ids(client) == [keep]
    assert post_form(client, f"/todos/{gone}/delete").status_code == 404


def test_a_user_sees_only_their_own_todos(make_client: Callable[[], Client]) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    anns = add_todo(ann, "ann's secret")
    bobs = add_todo(bob, "bob's plan")
    assert todo_ids(ann) == [anns]
    assert todo_ids(bob) == [bobs]
    assert "ann's secret" not in bob.get("/todos").text


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Please write something: a todo cannot be empty."),
        ("   \t ", "Please write something: a todo cannot be empty."),
        ("x" * 501, "A todo is at most 500 characters long; this one has 501."),
        ("\u200b", INVISIBLE),
        (" \u3164\u200d\ufeff\u2800 ", INVISIBLE),
        ("\x01\u061c\U000e0041", INVISIBLE),
    ],
    ids=["empty", "blank", "501-characters", "zero-width-space", "fillers", "controls"],
)
def test_adding_bad_text_says_why(client: Client, text: str, message: str) -> None:
    register(client, "ann")
    response = post_form(client, "/todos", text=text)
    assert response.status_code == 422
    assert errors(response) == [message]
    assert page_of(response).select("form#add-form")
    assert todo_ids(client) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Please write something: a todo cannot be empty."),
        ("x" * 501, "A todo is at most 500 characters long; this one has 501."),
        ("\u115f\u1160\uffa0", INVISIBLE),
    ],
    ids=["empty", "501-characters", "hangul-fillers"],
)
def test_editing_to_bad_text_says_why(client: Client, text: str, message: str) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "buy milk")
    response = post_form(client, f"/todos/{todo_id}/edit", text=text)
    assert response.status_code == 422
    assert errors(response) == [message]
    assert todo_item(client, todo_id).select_one(".todo-text").text == "buy milk"


def test_a_nul_character_is_never_stored(client: Client) -> None:
    """No database stores NUL: refused (422), or replaced; never a server error."""
    register(client, "ann")
    response = post_form(client, "/todos", text="nul\x00byte")
    assert response.status_code in {303, 422}
    if response.status_code == 422:
        assert errors(response)
    else:
        (todo_id,) = todo_ids(client)
        text = todo_item(client, todo_id).select_one(".todo-text").text
        assert text == "nul\ufffdbyte"


def test_a_todo_of_500_characters_is_fine(client: Client) -> None:
    register(client, "ann")
    text = "é" * 500
    assert post_form(client, "/todos", text=text).status_code == 303
    (todo_id,) = todo_ids(client)
    assert todo_item(client, todo_id).select_one(".todo-text").text == text


def test_a_form_without_text_is_not_a_server_error(client: Client) -> None:
    register(client, "ann")
    todo_id = add_todo(client, "buy milk")
    for path in ("/todos", f"/todos/{todo_id}/edit"):
        response = client.post(path, data={"csrf_token": csrf_token(client, "/todos")})
        assert response.status_code == 422, path


def test_odd_form_bodies_are_not_server_errors(client: Client) -> None:
    register(client, "ann")
    token = csrf_token(client, "/todos")
    odd: list[dict[str, object]] = [
        {
            "content": b"\xff\xfe\x00",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {
            "content": b"text=%FF%FE&csrf_token=" + token.encode(),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {"json": {"text": "json", "csrf_token": token}},
        {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ]
    for kwargs in odd:
        response = client.post("/todos", **kwargs)
        assert response.status_code < 500, kwargs


# -- ownership -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["edit", "done", "undone", "delete"])
def test_another_users_todo_is_not_found(make_client: Callable[[], Client], action: str) -> None:
    ann, bob = make_client(), make_client()
    register(ann, "ann")
    register(bob, "bob")
    todo_id = add_todo(ann, "ann's")
    if action == "undone":
        post_form(ann, f"/todos/{todo_id}/done")
    before = todo_item(ann, todo_id)

    response = post_form(bob, f"/todos/{todo_id}/{action}", text="bob was here")
    assert response.status_code == 404
    assert "There is no such todo." in response.text

    after = todo_item(ann, todo_id)
    assert after.select_one(".todo-text").text == before.select_one(".todo-text").text == "ann's"
    assert after.classes == before.classes


@pytest.mark.parametrize("action", ["edit", "done", "undone", "delete"])
@pytest.mark.parametrize("todo_id", ["999", str(2**40), "0", "-1"])
def test_a_missing_todo_is_not_found(client: Client, action: str, todo_id: str) -> None:
    register(client, "ann")
    response = post_form(client, f"/todos/{todo_id}/{action}", text="x")
    assert response.status_code == 404


# -- the DOM contract ------------------------------------------------------------------------


def test_the_todos_page_keeps_the_dom_contract(client: Client) -> None:
    register(client, "ann")
    open_id = add_todo(client, "open one")
    done_id = add_todo(client, "done one")
    post_form(client, f"/todos/{done_id}/done")
    page = page_of(client.get("/todos"))

    logout_form = page.select_one("form#logout-form")
    assert logout_form.attrs["action"] == "/logout"
    assert logout_form.select("button[type=submit]")

    add = page.select_one("form#add-form")
    assert add.attrs["action"] == "/todos"
    assert add.select_one("input[name=text]")
    assert add.select("button[type=submit]")

    items = page.select("li.todo")
    assert sorted(int(li.attrs["data-id"]) for li in items) == sorted([open_id, done_id])
    for todo_id, done in ((open_id, False), (done_id, True)):
        item = page.select_one(f'li.todo[data-id="{todo_id}"]')
        assert ("done" in item.classes) is done
        assert item.select_one(".todo-text").text == ("done one" if done else "open one")
        toggle = "undone" if done else "done"
        form = item.select_one(f"form.{toggle}-form")
        assert form.attrs["action"] == f"/todos/{todo_id}/{toggle}"
        assert form.select("button")
        assert not item.select(f"form.{'done' if done else 'undone'}-form")
        delete = item.select_one("form.delete-form")
        assert delete.attrs["action"] == f"/todos/{todo_id}/delete"
        assert delete.select("button")
        edit = item.select_one("form.edit-form")
        assert edit.attrs["action"] == f"/todos/{todo_id}/edit"
        assert (
            edit.select_one("input[name=text]").attrs["value"] == item.select_one(".todo-text").text
        )

    panel = page.select_one("section#signal-panel")
    assert panel is not None
    assert page.select('script[src="/static/panel.js"]')


def test_the_login_and_register_pages_keep_the_dom_contract(client: Client) -> None:
    for path, form_id in (("/login", "login-form"), ("/register", "register-form")):
        page = page_of(client.get(path))
        form = page.select_one(f"form#{form_id}")
        assert form.attrs["action"] == path
        assert form.select_one("input[name=username]")
        assert form.select_one("input[name=password]").attrs.get("type") == "password"
        assert form.select("button[type=submit]")


def test_error_pages_are_pages(client: Client) -> None:
    """A 404 or a 403 is an HTML page with an .error message, not a JSON body."""
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert errors(response)
    response = client.post("/logout", data={})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert errors(response)
