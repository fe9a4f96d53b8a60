"""HTTP hardening: a bound on request bodies, the security headers of every
response, the ``Allow`` header of a 405, and validation errors that quote little.

Both middleware are pure ASGI, as Starlette's own: they pass other scopes
(``lifespan``, ``websocket``) through untouched, wrap ``receive`` and ``send``, never
buffer a response, and read no more of a body than the application asks for.
``create_app()`` (web.py) puts them outside everything else, so that a refused body
costs nothing and every answer, a 413 included, carries the headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# -- the body limit ----------------------------------------------------------------------------


def check_max_body(max_body: object) -> int:
    """*max_body* if it is a usable body limit (a positive number of bytes);
    ``TypeError`` or ``ValueError`` saying why not otherwise."""
    if isinstance(max_body, bool) or not isinstance(max_body, int):
        raise TypeError(f"max_body must be a number of bytes (an int), got {max_body!r}.")
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, got {max_body}.")
    return max_body


def describe_size(size: int) -> str:
    """*size* bytes, for people: ``"64 KiB"``, ``"1 MiB"``, ``"1000 bytes"``."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes" if size != 1 else "1 byte"


# The rest of a refused body is not worth reading: the server closes the connection.
CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """A request body passed the limit while the application was reading it.

    An ``HTTPException`` (413), so that the application's own handler answers it,
    with a page or JSON as for any other error (FastAPI passes HTTPExceptions
    raised while it reads a body through, where it turns others into a 400).
    """

    def __init__(self, max_body: int) -> None:
        super().__init__(413, too_large_message(max_body), headers=dict(CLOSE))


def too_large_message(max_body: int) -> str:
    return f"The request body is too large: at most {describe_size(max_body)} is accepted."


class BodyLimitMiddleware:
    """Refuses a request whose body is longer than *max_body* bytes, with 413.

    A ``Content-Length`` over the limit is answered at once, before any of the body
    is read, as JSON (``{"detail": ...}``) under *json_prefix* and as plain text
    elsewhere. A body sent without one (``Transfer-Encoding: chunked``) is counted
    as it arrives: the ``receive()`` that would pass the limit raises
    :class:`BodyTooLarge` instead, as does every later one, so the application
    sees at most *max_body* bytes; if it lets the error out before it has started
    its response, the middleware answers the 413 itself.

    :param app: the ASGI application to wrap.
    :param max_body: the limit, in bytes (a positive int).
    :param json_prefix: the path under which answers are JSON.
    """

    def __init__(self, app: ASGIApp, max_body: int, json_prefix: str = "/api") -> None:
        self.app = app
        self.max_body = check_max_body(max_body)
        self.json_prefix = json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(scope, send)
            return
        await _LimitedRequest(self, scope, receive, send).run()

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = too_large_message(self.max_body)
        path: str = scope["path"]
        response: Response
        if path == self.json_prefix or path.startswith(self.json_prefix + "/"):
            response = JSONResponse({"detail": message}, status_code=413, headers=CLOSE)
        else:
            response = PlainTextResponse(message, status_code=413, headers=CLOSE)
        await response(scope, _nothing_to_receive, send)


class _LimitedRequest:
    """One request whose body is counted as the application reads it."""

    def __init__(
        self, limit: BodyLimitMiddleware, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.too_large = False
        self.started = False

    async def run(self) -> None:
        try:
            await self.limit.app(self.scope, self.receive, self.send)
        except BodyTooLarge:
            if self.started:  # too late for a 413: end the connection
                raise
            await self.limit._refuse(self.scope, self._send)

    async def receive(self) -> Message:
        if self.too_large:
            raise BodyTooLarge(self.limit.max_body)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.max_body:
                self.too_large = True
                raise BodyTooLarge(self.limit.max_body)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None if it has none (or none that reads
    as a number: the body is counted as it comes then)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _nothing_to_receive() -> Message:
    # The refusal reads nothing: a response that waits for a disconnect sees one.
    return {"type": "http.disconnect"}


# -- headers ----------------------------------------------------------------------------------

# The pages: their own scripts, styles and forms only, never in a frame.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# /docs: Swagger UI from /docs/assets (its icons are data: URLs), the schema and
# "Try it out" calls to this origin; no inline script, no form, no frame.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
# Everything else (JSON, files, plain-text errors) loads nothing and is never framed.
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# Files that may be cached: the answer is the same for everyone.
STATIC_PREFIXES = ("/static/", "/docs/assets/")


def security_headers(path: str, content_type: str) -> dict[str, str]:
    """The headers a response at *path* with *content_type* gets, where it does not
    set them itself: ``nosniff``, no framing, a Content-Security-Policy that fits
    what it is, a same-origin Referer, and ``no-store`` unless it is a static file
    (pages, JSON and errors can hold a user's data)."""
    if path == "/docs" or path.startswith("/docs/"):
        csp = DOCS_CSP
    elif content_type.startswith("text/html"):
        csp = PAGE_CSP
    else:
        csp = OTHER_CSP
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "same-origin",
    }
    if not path.startswith(STATIC_PREFIXES):
        headers["Cache-Control"] = "no-store"
    return headers


class SecurityHeadersMiddleware:
    """Adds :func:`security_headers` to every HTTP response, keeping any of them
    that the response sets itself.

    :param app: the ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(path, headers.get("content-type", "")).items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """The answer to an unexpected exception: a short 500, with the security headers
    (Starlette sends it from outside every middleware; the exception is logged and
    raised on by Starlette's ``ServerErrorMiddleware``)."""
    text = "Internal Server Error"
    headers = security_headers(request.url.path, "text/plain")
    return PlainTextResponse(text, status_code=500, headers=headers)


# -- 405 --------------------------------------------------------------------------------------

# Every method a route can name (RFC 9110, and PATCH).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """The methods that some route of *routes* answers at *scope*'s path, sorted:
    the ``Allow`` of a 405 (Starlette names those of the first route that matched
    the path only, and this app has a route per method).

    Each method is tried with the routes' public ``matches()``, so it works
    whatever shape the router gives them: FastAPI's routes copied into the app
    (up to 0.136), or the included routers it keeps whole (0.137 on; tested with
    0.115, 0.137 and 0.165). A mount matches every method: one of StaticFiles
    answers ``GET`` and ``HEAD`` (older Starlette versions do not say so
    themselves), other mounted applications are left out.
    """
    path = scope["path"]
    root_path = scope.get("app_root_path", scope.get("root_path", ""))

    def matches(route: BaseRoute, method: str) -> bool:
        probe: Scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
        probe.update(headers=[], query_string=b"")
        return route.matches(probe)[0] is Match.FULL

    allowed: set[str] = set()
    for route in routes:
        if not isinstance(route, Mount):
            allowed.update(method for method in METHODS if matches(route, method))
        elif isinstance(route.app, StaticFiles) and matches(route, "GET"):
            allowed.update(("GET", "HEAD"))
    return sorted(allowed)


# -- validation errors -------------------------------------------------------------------------

EXCERPT = 100  # characters of an input that a validation error quotes at most
MAX_ERRORS = 20  # errors that a 422 lists at most


def excerpt(value: Any, limit: int = EXCERPT) -> Any:
    """*value* as a validation error may quote it: as it is if it is short, else
    (as JSON text, for a list or an object) its first *limit* characters followed
    by ``"... (N more characters)"``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) <= limit:
        return value
    left = len(text) - limit
    return f"{text[:limit]}... ({left} more character{'s' if left > 1 else ''})"


def bounded_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors (as ``jsonable_encoder(exc.errors())`` gives them) that quote
    the request briefly: the input, the location's keys and the context cut by
    :func:`excerpt`, at most :data:`MAX_ERRORS` of them, and one more that says how
    many were left out."""
    shown = [_bounded(error) for error in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        left = len(errors) - MAX_ERRORS
        shown.append(
            {
                "type": "too_many_errors",
                "loc": [],
                "msg": f"{left} more error{'s' if left > 1 else ''} not shown.",
            }
        )
    return shown


def _bounded(error: Mapping[str, Any]) -> dict[str, Any]:
    bounded = dict(error)
    if "input" in bounded:
        bounded["input"] = excerpt(bounded["input"])
    if isinstance(bounded.get("loc"), list | tuple):
        bounded["loc"] = [excerpt(part) for part in bounded["loc"]]
    if isinstance(bounded.get("ctx"), Mapping):
        bounded["ctx"] = {key: excerpt(value) for key, value in bounded["ctx"].items()}
    return bounded
