"""The JSON API, under ``/api``; documented at ``/docs`` (OpenAPI at ``/openapi.json``)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from tocsin.signals import CLEANSED_SUBSTITUTE, cleanse_credentials

from . import auth
from .db import Database
from .http import bounded_errors
from .models import (
    TEXT_MAX,
    USERNAME_MAX,
    WHITESPACE,
    Todo,
    User,
    clean_text,
    is_invisible,
    text_error,
)

DESCRIPTION = """\
The Todo app's JSON API. Log in with `POST /api/session`: the session cookie it
sets authenticates the other calls.

**CSRF.** The session cookie is `SameSite=Lax`, so browsers do not send it with
cross-site `POST`, `PATCH` or `DELETE` requests; and every unsafe call that has a
body must send it as JSON (`Content-Type: application/json`, answered with 415
otherwise), which a cross-site HTML form cannot do and a cross-site script can
only do after a CORS preflight, which this API never allows.
"""

MAX_ID = 2**31 - 1
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# Documents the cookie that authenticates the API (the session is read as usual).
session_cookie = APIKeyCookie(
    name="todo_session",
    auto_error=False,
    description="The session cookie that POST /api/session sets.",
)

# The rules, in the schema (the validators below check them, with clearer messages).
USERNAME_SCHEMA: JsonDict = {
    "minLength": auth.USERNAME_MIN,
    "maxLength": USERNAME_MAX,
    "pattern": "^[A-Za-z0-9_.-]+$",
}
PASSWORD_SCHEMA: JsonDict = {"minLength": auth.PASSWORD_MIN, "maxLength": auth.PASSWORD_MAX}


def _char_class(chars: str) -> str:
    """*chars* for a regex character class, runs written as ranges."""
    codes, parts = sorted(map(ord, chars)), []
    start = previous = codes[0]
    for code in [*codes[1:], -1]:
        if code != previous + 1:
            last = f"-{_regex_char(previous)}" if previous > start else ""
            parts.append(_regex_char(start) + last)
            start = code
        previous = code
    return "".join(parts)


def _regex_char(code: int) -> str:
    # \uXXXX means the same to Python's re and to JavaScript; past U+FFFF they differ,
    # but both read the character itself as one (JavaScript with the u flag).
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


# Every character models.is_invisible() names: controls and format characters are
# all in planes 0, 1 and 14.
_INVISIBLE_CHARS = "".join(
    chr(code)
    for plane in (0, 1, 14)
    for code in range(plane << 16, (plane + 1) << 16)
    if is_invisible(chr(code))
)

# 1 to 500 characters once stripped of whitespace at both ends, one of them visible
# (the lookahead), and no NUL. The characters are spelled out: what \s means differs
# between regex engines.
_SPACE, _INVISIBLE = _char_class(WHITESPACE), _char_class(_INVISIBLE_CHARS)
_CHAR, _EDGE = r"[^\u0000]", rf"[^{_SPACE}\u0000]"
TEXT_SCHEMA: JsonDict = {
    "pattern": (
        rf"^[{_SPACE}]*(?=[{_INVISIBLE}]*[^{_INVISIBLE}])"
        rf"{_EDGE}({_CHAR}{{0,{TEXT_MAX - 2}}}{_EDGE})?[{_SPACE}]*$"
    )
}
TEXT_HELP = f"1 to {TEXT_MAX} characters once stripped, one of them visible, without NUL."


def _usable_password(password: str) -> str:
    error = auth.password_error(password)
    if error:
        raise ValueError(error)
    return password


UsablePassword = Annotated[str, AfterValidator(_usable_password)]


class Message(BaseModel):
    detail: str = Field(examples=["Not logged in."])


class NewUser(BaseModel):
    username: str = Field(
        description="3 to 40 letters, digits, '_', '.' or '-'.", json_schema_extra=USERNAME_SCHEMA
    )
    password: UsablePassword = Field(
        description="8 to 128 characters.", json_schema_extra=PASSWORD_SCHEMA
    )

    @field_validator("username")
    @classmethod
    def _valid_username(cls, username: str) -> str:
        username = auth.normalize_username(username)
        error = auth.username_error(username)
        if error:
            raise ValueError(error)
        return username


class Credentials(BaseModel):
    username: str
    password: str


class UserOut(BaseModel):
    id: int
    username: str


def _valid_text(text: str) -> str:
    text = clean_text(text)
    error = text_error(text)
    if error:
        raise ValueError(error)
    return text


class NewTodo(BaseModel):
    text: str = Field(description=TEXT_HELP, json_schema_extra=TEXT_SCHEMA)

    @field_validator("text")
    @classmethod
    def _text(cls, text: str) -> str:
        return _valid_text(text)


class TodoChange(BaseModel):
    # The rules on the string itself, not beside the anyOf [string, null].
    text: Annotated[str, Field(json_schema_extra=TEXT_SCHEMA)] | None = Field(
        default=None, description=TEXT_HELP
    )
    done: bool | None = Field(
        default=None,
        strict=True,  # true or false, not "yes" or 1
        description="true marks it done, false not done (sending the signals).",
    )

    @field_validator("text")
    @classmethod
    def _text(cls, text: str | None) -> str | None:
        return None if text is None else _valid_text(text)


class TodoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    done: bool
    created_at: datetime.datetime
    completed_at: datetime.datetime | None


Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": Message, "description": description}


NOT_LOGGED_IN: Responses = {401: _error("Not logged in.")}
NOT_FOUND: Responses = {404: _error("No such todo, or not yours.")}
NOT_JSON: Responses = {415: _error("The body is not JSON.")}


def _printable(value: Any) -> Any:
    """*value* with lone surrogates (from JSON's ``"\\ud800"``) replaced, so that it
    can be encoded in a response."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    return value


def _without_secrets(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error that does not quote a password back."""
    loc = [part for part in error.get("loc", ()) if isinstance(part, str)]
    if "input" in error:
        if any(cleanse_credentials({part: 1})[part] != 1 for part in loc):
            error = {**error, "input": CLEANSED_SUBSTITUTE}
        elif isinstance(error["input"], dict):
            error = {**error, "input": cleanse_credentials(error["input"])}
    return error


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 response, without passwords, safe for any input it quotes, and
    short: it quotes an excerpt of the input at most (http.bounded_errors)."""
    errors = [_without_secrets(error) for error in jsonable_encoder(exc.errors())]
    return JSONResponse(status_code=422, content={"detail": _printable(bounded_errors(errors))})


def unreadable_body(exc: StarletteHTTPException) -> JSONResponse | None:
    """A 422 like FastAPI's for invalid JSON, for a JSON body that is not even
    UTF-8 (FastAPI answers 400 then); None for other errors."""
    if exc.status_code != 400 or not isinstance(exc.__cause__, ValueError):
        return None
    error = {
        "type": "json_invalid",
        "loc": ["body"],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": "The body is not UTF-8 text."},
    }
    return JSONResponse(status_code=422, content={"detail": [error]})


async def require_json(request: Request) -> None:
    """An unsafe request with a body must send JSON: the API's CSRF defence, with
    the session cookie's ``SameSite=Lax``."""
    if request.method not in _UNSAFE:
        return
    if not await request.body():
        return
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise HTTPException(415, "Send JSON, with Content-Type: application/json.")


router = APIRouter(prefix="/api", dependencies=[Depends(require_json)])


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# Each endpoint opens its session and finds its user in its own worker thread: as
# dependencies, they would cost a thread hop each (measured: a sixth of the CPU of
# an API request, benchmarks/bench_todo.py).
@contextmanager
def db_session(request: Request) -> Iterator[Session]:
    with _database(request).request_session(request) as session:
        yield session


@contextmanager
def logged_in(request: Request) -> Iterator[tuple[Session, User]]:
    """The request's session and its logged-in user; 401 without one."""
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            raise HTTPException(401, "Not logged in.")
        yield session, user


# Declares the cookie in the OpenAPI schema (FastAPI calls it on the loop, no I/O).
SessionCookie = Annotated[str | None, Security(session_cookie)]


def _own_todo(session: Session, user: User, todo_id: int) -> Todo:
    todo = session.get(Todo, todo_id) if 0 < todo_id <= MAX_ID else None
    if todo is None or todo.owner_id != user.id:
        raise HTTPException(404, "There is no such todo.")
    return todo


# -- users and the session --------------------------------------------------------------------


@router.post(
    "/users",
    tags=["users"],
    status_code=201,
    response_model=UserOut,
    responses={
        409: _error("The username is taken."),
        429: _error("Too many accounts from this address, or the server is busy: see Retry-After."),
        **NOT_JSON,
    },
)
def create_user(new: NewUser, request: Request) -> UserOut:
    """Register a user (this does not log in). Usernames are unique whatever their
    case, and compared after NFKC normalization."""
    with db_session(request) as session:
        return _create_user(new, request, session)


def _create_user(new: NewUser, request: Request, session: Session) -> UserOut:
    taken = HTTPException(409, "That username is taken.")
    try:
        auth.charge_registration(session, request)  # commits: no connection held
        password_hash = auth.hash_password(new.password)
    except (auth.TooManyRegistrations, auth.Busy) as refused:
        raise _too_many(refused) from None
    if auth.user_named(session, new.username) is not None:
        raise taken
    user = User(username=new.username, password_hash=password_hash)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise taken from None
    return UserOut(id=user.id, username=user.username)


def _too_many(refused: auth.LoginLocked | auth.Busy) -> HTTPException:
    return HTTPException(429, refused.message, headers={"Retry-After": str(refused.seconds)})


@router.post(
    "/session",
    tags=["session"],
    response_model=UserOut,
    responses={
        401: _error("Wrong username or password."),
        429: _error("Too many failed logins, or the server is busy: see Retry-After."),
        **NOT_JSON,
    },
)
def log_in(credentials: Credentials, request: Request) -> UserOut:
    """Log in: sets the session cookie (a new session)."""
    with db_session(request) as session:
        try:
            user = auth.authenticate(session, request, credentials.username, credentials.password)
        except (auth.LoginLocked, auth.Busy) as refused:
            raise _too_many(refused) from None
        except PermissionError:
            raise HTTPException(401, "Wrong username or password.") from None
        auth.login(session, request, user)
        session.commit()
        return UserOut(id=user.id, username=user.username)


@router.delete("/session", tags=["session"], status_code=204, response_class=Response)
def log_out(request: Request) -> Response:
    """Log out (also fine when not logged in): the session ends on the server, so
    the cookie no longer works, even replayed."""
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is not None:
            auth.logout(session, request, user)
            session.commit()
    return Response(status_code=204)


class PasswordChange(BaseModel):
    current: str = Field(description="The current password.")
    new: UsablePassword = Field(
        description="8 to 128 characters.", json_schema_extra=PASSWORD_SCHEMA
    )


class PasswordChanged(BaseModel):
    sessions_ended: int = Field(description="How many other sessions were logged out.")


@router.put(
    "/session/password",
    tags=["session"],
    response_model=PasswordChanged,
    responses={
        **NOT_LOGGED_IN,
        403: _error("Wrong current password."),
        429: _error("Too many failed attempts, or the server is busy: see Retry-After."),
        **NOT_JSON,
    },
)
def change_password(
    change: PasswordChange, request: Request, _: SessionCookie = None
) -> PasswordChanged:
    """Change your password: every other session of yours is logged out; this one
    gets a new session cookie. A wrong current password counts as a failed login."""
    with logged_in(request) as (session, user):
        try:
            ended = auth.change_password(session, request, user, change.current, change.new)
        except (auth.LoginLocked, auth.Busy) as refused:
            raise _too_many(refused) from None
        except PermissionError:
            raise HTTPException(403, "That is not your current password.") from None
        session.commit()
    return PasswordChanged(sessions_ended=max(0, len(ended) - 1))


# -- todos ------------------------------------------------------------------------------------


@router.get("/todos", tags=["todos"], response_model=list[TodoOut], responses=NOT_LOGGED_IN)
def list_todos(request: Request, _: SessionCookie = None) -> list[TodoOut]:
    """Your todos, oldest first."""
    with logged_in(request) as (session, user):
        todos = session.scalars(select(Todo).where(Todo.owner_id == user.id).order_by(Todo.id))
        return [TodoOut.model_validate(todo) for todo in todos]


@router.post(
    "/todos",
    tags=["todos"],
    status_code=201,
    response_model=TodoOut,
    responses={**NOT_LOGGED_IN, **NOT_JSON},
)
def create_todo(new: NewTodo, request: Request, _: SessionCookie = None) -> TodoOut:
    """Add a todo."""
    with logged_in(request) as (session, user):
        todo = Todo(text=new.text, done=False, owner_id=user.id)
        session.add(todo)
        session.commit()
        return TodoOut.model_validate(todo)


@router.get(
    "/todos/{todo_id}",
    tags=["todos"],
    response_model=TodoOut,
    responses={**NOT_LOGGED_IN, **NOT_FOUND},
)
def get_todo(todo_id: int, request: Request, _: SessionCookie = None) -> TodoOut:
    """One of your todos."""
    with logged_in(request) as (session, user):
        return TodoOut.model_validate(_own_todo(session, user, todo_id))


@router.patch(
    "/todos/{todo_id}",
    tags=["todos"],
    response_model=TodoOut,
    responses={**NOT_LOGGED_IN, **NOT_FOUND, **NOT_JSON},
)
def change_todo(
    todo_id: int, change: TodoChange, request: Request, _: SessionCookie = None
) -> TodoOut:
    """Change the text, or mark done (``done: true``, which sends ``todo_completed``)
    or not done (``done: false``, ``todo_reopened``)."""
    with logged_in(request) as (session, user):
        todo = _own_todo(session, user, todo_id)
        if change.text is not None:
            todo.text = change.text
        if change.done is True:
            todo.mark_as_done()
        elif change.done is False:
            todo.mark_as_not_done()
        session.commit()
        return TodoOut.model_validate(todo)


@router.delete(
    "/todos/{todo_id}",
    tags=["todos"],
    status_code=204,
    response_class=Response,
    responses={**NOT_LOGGED_IN, **NOT_FOUND},
)
def delete_todo(todo_id: int, request: Request, _: SessionCookie = None) -> Response:
    """Delete one of your todos."""
    with logged_in(request) as (session, user):
        session.delete(_own_todo(session, user, todo_id))
        session.commit()
    return Response(status_code=204)
