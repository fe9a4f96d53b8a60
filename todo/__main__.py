"""``python -m todo [--host 127.0.0.1] [--port 8000]``: migrate the database, then serve."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import make_url

from .db import upgrade
from .panel import Panel
from .settings import Settings
from .web import create_app


class Server(uvicorn.Server):
    """uvicorn's server, which ends the signal panels' streams when it stops:
    otherwise it would wait for them, as for any response still being sent."""

    def __init__(self, config: uvicorn.Config, panel: Panel) -> None:
        super().__init__(config)
        self.panel = panel

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.panel.hub.close()
        await super().shutdown(sockets)


def make_server(app: FastAPI, host: str, port: int, **options: Any) -> Server:
    """A uvicorn server for *app* (made by ``create_app``)."""
    options.setdefault("timeout_graceful_shutdown", 3)
    config = uvicorn.Config(app, host=host, port=port, **options)
    return Server(config, app.state.panel)


def configure_logging() -> None:
    """Warnings from everything; what the app's and tocsin's loggers say at INFO."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("todo", "tocsin"):
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m todo", description="Migrate the Todo app's database, then serve it."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args(argv)

    configure_logging()
    settings = Settings.from_env()
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"Database: {database} (migrating to the latest revision)", flush=True)
    upgrade(settings.database_url)
    app = create_app(settings)
    server = make_server(app, args.host, args.port)
    print(f"Todo app: http://{args.host}:{args.port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn stopped cleanly, then passed Ctrl+C on
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
