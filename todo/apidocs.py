"""The JSON API's documentation, ``/docs``: Swagger UI, served from this app.

Swagger UI's script and style come from the swagger-ui-bundle-v2 package (Apache
2.0) at ``/docs/assets/``, rather than from a CDN as FastAPI's own ``/docs`` has
them: the page works offline, and its Content-Security-Policy (http.DOCS_CSP)
allows scripts from this origin only. That is also why the page starts Swagger UI
from a file, ``/static/docs.js``, where FastAPI writes an inline script. FastAPI's
``/docs`` and ``/redoc`` are turned off (``docs_url=None, redoc_url=None``); ReDoc
has no package to serve it from.
"""

from __future__ import annotations

import html

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

try:
    from swagger_ui_bundle import swagger_ui_path
except ImportError as error:  # an environment made before /docs was served offline
    raise ImportError(
        "the Todo app serves /docs from the swagger-ui-bundle-v2 package: "
        "pip install -e . --group todo (python3 dev.py run does it)"
    ) from error

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# What the page uses of the package's files (it also holds a demo page, source maps...).
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - API documentation</title>
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""


class _Assets(StaticFiles):
    """The files named in ASSETS, of Swagger UI's directory; 404 for the others."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSETS:
            raise HTTPException(404)
        return await super().get_response(path, scope)


def add_docs(app: FastAPI) -> None:
    """Serve Swagger UI for *app*'s schema at ``/docs``, its files at
    ``/docs/assets/``. *app* must have been made with ``docs_url=None`` (and its
    ``openapi_url`` set)."""
    if app.docs_url is not None:
        raise ValueError(
            f"the app already serves FastAPI's own docs at {app.docs_url}: "
            f"make it with FastAPI(docs_url=None)"
        )
    if app.openapi_url is None:
        raise ValueError("the app has no schema to document: its openapi_url is None")
    page = PAGE.format(
        title=html.escape(app.title),
        assets=ASSETS_PATH,
        openapi_url=html.escape(app.openapi_url),
    )

    async def docs_page(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    app.mount(ASSETS_PATH, _Assets(directory=swagger_ui_path), name="docs-assets")
    app.add_route(DOCS_PATH, docs_page, include_in_schema=False)
