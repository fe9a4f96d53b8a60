"""The web application: middleware, pages and forms (with CSRF checks), the signal
panel's stream, and the JSON API (api.py)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRouter
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from tocsin.contrib.asgi import RequestSignalsMiddleware

from . import api, auth, http
from .apidocs import add_docs
from .db import REQUEST_THREADS, Database
from .models import TEXT_MAX, USERNAME_MAX, Todo, User, clean_text, text_error
from .panel import (
    Panel,
    PanelRequestMiddleware,
    PanelSessionMiddleware,
    recent_response,
    stream_response,
)
from .receivers import connect_receivers
from .remote import AppRemote
from .settings import Settings

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "todo_session"
SESSION_MAX_AGE = 14 * 24 * 3600
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
# A form's username is echoed back into the page: never more than a valid one holds
# (a longer one is refused anyway, as too long).
ECHO_MAX = USERNAME_MAX + 1

templates = Jinja2Templates(directory=HERE / "templates")


class CSRFError(Exception):
    """A form came without the session's CSRF token."""


# -- helpers shared by the pages -----------------------------------------------------------


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


@contextmanager
def db_session(request: Request) -> Iterator[Session]:
    with database_of(request).request_session(request) as session:
        yield session


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf_token")
    if not isinstance(token, str):
        token = request.session["csrf_token"] = secrets.token_urlsafe(32)
    return token


async def verify_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    """Every POST form carries the session's token in a hidden ``csrf_token`` field."""
    expected = request.session.get("csrf_token")
    if not isinstance(expected, str) or not hmac.compare_digest(
        expected.encode(), csrf_token.encode("utf-8", "surrogatepass")
    ):
        raise CSRFError


CSRFChecked = Annotated[None, Depends(verify_csrf)]
FormText = Annotated[str, Form()]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    context.setdefault("show_panel", template != "error.html")
    context["csrf_token"] = csrf_token(request)
    # The security headers (a CSP, no-store...) are http.SecurityHeadersMiddleware's.
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def too_many(
    request: Request, template: str, refused: auth.LoginLocked | auth.Busy, **context: Any
) -> HTMLResponse:
    """*template* again with the refusal's message: 429, and when to retry."""
    response = render(request, template, 429, error=refused.message, **context)
    response.headers["Retry-After"] = str(refused.seconds)
    return response


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def render_todos(
    request: Request,
    session: Session,
    user: User,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    todos = session.scalars(
        select(Todo).where(Todo.owner_id == user.id).order_by(Todo.done, Todo.id)
    ).all()
    return render(request, "todos.html", status_code, user=user, todos=todos, **context)


def own_todo(session: Session, user: User, todo_id: int) -> Todo:
    """The user's todo *todo_id*; 404 if it is missing or someone else's."""
    todo = session.get(Todo, todo_id) if 0 < todo_id <= MAX_ID else None
    if todo is None or todo.owner_id != user.id:
        raise HTTPException(404, "There is no such todo.")
    return todo


# -- the pages -------------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


@pages.get("/")
def index(request: Request) -> RedirectResponse:
    return redirect("/todos" if "user_id" in request.session else "/login")


def _anonymous_page(request: Request, template: str) -> Response:
    """A page for visitors who are not logged in: the others go to their todos."""
    with db_session(request) as session:
        if auth.current_user(request, session) is not None:
            return redirect("/todos")
    return render(request, template)


@pages.get("/register", response_class=HTMLResponse)
def register_page(request: Request) -> Response:
    return _anonymous_page(request, "register.html")


@pages.post("/register", response_class=HTMLResponse)
def register(
    request: Request, _: CSRFChecked, username: FormText = "", password: FormText = ""
) -> Response:
    username = auth.normalize_username(username)[:ECHO_MAX]  # echoed back: bounded
    error = auth.username_error(username) or auth.password_error(password)
    if error:
        return render(request, "register.html", 422, error=error, username=username)
    taken = "That username is taken: choose another one."
    with db_session(request) as session:
        try:
            auth.charge_registration(session, request)  # commits: no connection held
            password_hash = auth.hash_password(password)
        except (auth.TooManyRegistrations, auth.Busy) as refused:
            return too_many(request, "register.html", refused, username=username)
        if auth.user_named(session, username) is not None:
            return render(request, "register.html", 409, error=taken, username=username)
        user = User(username=username, password_hash=password_hash)
        session.add(user)
        try:
            session.flush()
            auth.login(session, request, user)
            session.commit()
        except IntegrityError:  # registered meanwhile
            session.rollback()
            return render(request, "register.html", 409, error=taken, username=username)
    return redirect("/todos")


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return _anonymous_page(request, "login.html")


@pages.post("/login", response_class=HTMLResponse)
def login(
    request: Request, _: CSRFChecked, username: FormText = "", password: FormText = ""
) -> Response:
    username = auth.normalize_username(username)[:ECHO_MAX]  # echoed back: bounded
    with db_session(request) as session:
        try:
            user = auth.authenticate(session, request, username, password)
        except (auth.LoginLocked, auth.Busy) as refused:
            return too_many(request, "login.html", refused, username=username)
        except PermissionError:
            error = "Wrong username or password."
            return render(request, "login.html", 401, error=error, username=username)
        auth.login(session, request, user)
        session.commit()
    return redirect("/todos")


@pages.post("/logout")
def logout(request: Request, _: CSRFChecked) -> RedirectResponse:
    with db_session(request) as session:
        auth.logout(session, request, auth.current_user(request, session))
        session.commit()
    return redirect("/login")


@pages.get("/password", response_class=HTMLResponse)
def password_page(request: Request) -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        return render(request, "password.html", user=user)


@pages.post("/password", response_class=HTMLResponse)
def change_password(
    request: Request, _: CSRFChecked, current: FormText = "", new: FormText = ""
) -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        try:
            ended = auth.change_password(session, request, user, current, new)
        except ValueError as error:
            return render(request, "password.html", 422, user=user, error=str(error))
        except (auth.LoginLocked, auth.Busy) as refused:
            return too_many(request, "password.html", refused, user=user)
        except PermissionError:
            wrong = "That is not your current password."
            return render(request, "password.html", 401, user=user, error=wrong)
        session.commit()
        others = len(ended) - 1  # this browser's old session is among them
        return render(request, "password.html", user=user, changed=True, others=others)


@pages.get("/todos", response_class=HTMLResponse)
def todos_page(request: Request) -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        return render_todos(request, session, user)


@pages.post("/todos", response_class=HTMLResponse)
def add_todo(request: Request, _: CSRFChecked, text: FormText = "") -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        text = clean_text(text)
        error = text_error(text)
        if error:
            return render_todos(request, session, user, 422, error=error, new_text=text[:TEXT_MAX])
        session.add(Todo(text=text, done=False, owner_id=user.id))
        session.commit()
    return redirect("/todos")


@pages.post("/todos/{todo_id:int}/edit", response_class=HTMLResponse)
def edit_todo(request: Request, todo_id: int, _: CSRFChecked, text: FormText = "") -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        todo = own_todo(session, user, todo_id)
        text = clean_text(text)
        error = text_error(text)
        if error:
            return render_todos(request, session, user, 422, error=error, editing=todo.id)
        todo.text = text
        session.commit()
    return redirect("/todos")


def _change(request: Request, todo_id: int, action: str) -> Response:
    with db_session(request) as session:
        user = auth.current_user(request, session)
        if user is None:
            return redirect("/login")
        todo = own_todo(session, user, todo_id)
        if action == "done":
            todo.mark_as_done()
        elif action == "undone":
            todo.mark_as_not_done()
        else:
            session.delete(todo)
        session.commit()
    return redirect("/todos")


@pages.post("/todos/{todo_id:int}/done")
def done_todo(request: Request, todo_id: int, _: CSRFChecked) -> Response:
    return _change(request, todo_id, "done")


@pages.post("/todos/{todo_id:int}/undone")
def undone_todo(request: Request, todo_id: int, _: CSRFChecked) -> Response:
    return _change(request, todo_id, "undone")


@pages.post("/todos/{todo_id:int}/delete")
def delete_todo(request: Request, todo_id: int, _: CSRFChecked) -> Response:
    return _change(request, todo_id, "delete")


# -- the signal panel's stream ---------------------------------------------------------------


@pages.get("/signals/stream")
async def signal_stream(request: Request, after: str | None = None) -> Response:
    """This browser's signals, as server-sent events (``event: signal``, JSON data);
    429 or 503 when too many streams are open, 204 for a panel that has ended."""
    return stream_response(request, request.headers.get("last-event-id") or after)


@pages.get("/signals/recent")
async def recent_signals(request: Request) -> Response:
    """This browser's recent signals, oldest first, as JSON (handy in tests)."""
    return recent_response(request)


# -- errors ----------------------------------------------------------------------------------


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in {"/api", "/openapi.json"}


_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    422: "Unprocessable request",
}


_MESSAGES = {
    404: "There is nothing here.",
    405: "This address only answers the page's own forms: go back and use them.",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Every route at the path, where Starlette names the first one's methods.
        allowed = http.allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    if _wants_json(request):
        unreadable = api.unreadable_body(exc)
        if unreadable is not None:
            return unreadable
        return await http_exception_handler(request, exc)
    message = _MESSAGES.get(exc.status_code, exc.detail)
    if exc.status_code == 404 and exc.detail == "There is no such todo.":
        message = exc.detail
    response = render(
        request,
        "error.html",
        exc.status_code,
        title=_TITLES.get(exc.status_code, "Error"),
        message=message,
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _wants_json(request):
        return api.validation_error(exc)
    return render(
        request,
        "error.html",
        422,
        title="Unprocessable request",
        message="The form could not be read: please use the page's forms.",
    )


async def _csrf_error(request: Request, exc: Exception) -> Response:
    message = "CSRF check failed: reload the page and try again."
    return render(request, "error.html", 403, title="CSRF check failed", message=message)


# -- the app ---------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Todo app for *settings* (read from the environment by default).

    The database must be migrated first (``todo.db.upgrade(settings.database_url)``;
    ``python -m todo`` does it). The signal panel's tracer is subscribed while the
    app's lifespan runs.
    """
    settings = settings if settings is not None else Settings.from_env()
    database = Database(settings.database_url)
    panel = Panel()
    app_remote = AppRemote(settings, database, panel)
    connect_receivers()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The database pool is sized for this many sync endpoints at once (db.py).
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        panel.start()
        try:
            async with app_remote.running():  # todo_completed's worker (remote.py)
                yield
        finally:
            panel.stop()
            database.dispose()

    app = FastAPI(
        title="Todo",
        version="1.0",
        description=api.DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # apidocs.py serves /docs without a CDN; ReDoc is off
        redoc_url=None,
        openapi_tags=[{"name": "todos"}, {"name": "session"}, {"name": "users"}],
    )
    app.state.settings = settings
    app.state.database = database
    app.state.panel = panel
    app.state.remote = app_remote

    app.include_router(api.router)  # first: most requests are the API's
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    add_docs(app)

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(CSRFError, _csrf_error)
    app.add_exception_handler(Exception, http.server_error)

    # Added innermost first. From the outside in: the security headers, the body
    # limit, the panel's request context, tocsin's request signals, the session,
    # the panel id (read from the session).
    app.add_middleware(PanelSessionMiddleware, panel=panel)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(RequestSignalsMiddleware)
    app.add_middleware(PanelRequestMiddleware, panel=panel)
    app.add_middleware(http.BodyLimitMiddleware, max_body=settings.max_body)
    app.add_middleware(http.SecurityHeadersMiddleware)
    return app
