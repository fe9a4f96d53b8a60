"""The app's settings, read from the environment.

* ``DATABASE_URL``: a SQLAlchemy URL; ``sqlite:///<data dir>/todo.db`` by default.
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test`` switches to PostgreSQL.
* ``TODO_SECRET_KEY``: signs the session cookie. Without it, a key is generated
  once and kept in ``<data dir>/secret_key``, so that sessions survive a restart.
* ``TODO_DATA_DIR``: where the SQLite database and the key live; ``data/`` at the
  repository root by default.
* ``TODO_SECURE_COOKIES=1``: mark the session cookie ``Secure`` (behind HTTPS).
* ``TODO_REDIS_URL``: run ``todo_completed``'s remote receiver in another process,
  through Redis Streams at this URL (``redis://127.0.0.1:6379/0``), started with
  ``tocsin worker todo.remote:remote``. Without it, a worker thread of the app runs
  it, through memory (see todo/remote.py).
* ``TODO_REDIS_PREFIX``: the start of the app's Redis stream names (``todo`` by
  default: ``todo:events``, ``todo:events:handled``, ``todo:events:dead``), so that
  two apps on one Redis do not share their events. The app and its workers must agree.
* ``TODO_MAX_BODY``: the largest request body accepted, in bytes; 65536 (64 KiB)
  by default, at least 8192 (a todo of 500 characters, as a form, can take 6 KB).
  Larger bodies are refused with 413 (see http.py).

Events and the worker's reports that cross Redis are signed with keys derived from
the secret key (see :meth:`Settings.derived_key`): the app and its workers need the same one.

The data directory is created readable by its owner only (0700), as are the
secret key file and the SQLite database, with its -wal and -shm files (0600).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / "data"

_TRUE = {"1", "true", "yes", "on"}
DEFAULT_REDIS_PREFIX = "todo"

DEFAULT_MAX_BODY = 64 * 1024
MIN_MAX_BODY = 8 * 1024

log = logging.getLogger("todo")


@dataclass(frozen=True)
class Settings:
    """Everything :func:`todo.create_app` needs to know."""

    database_url: str
    secret_key: str = field(repr=False)
    data_dir: Path = DEFAULT_DATA_DIR
    secure_cookies: bool = False
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        _check_max_body(self.max_body, "max_body")

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for *purpose* (``"todo.remote.events"``, say), derived from
        the secret key (HMAC-SHA256): one secret, a different key for each use."""
        return hmac.new(self.secret_key.encode(), purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from *environ* (``os.environ`` by default), creating the data
        directory, and the secret key file if no key is given."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("TODO_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
        _make_data_dir(data_dir)
        database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'todo.db'}"
        secret_key = env.get("TODO_SECRET_KEY") or _stored_secret_key(data_dir / "secret_key")
        secure = env.get("TODO_SECURE_COOKIES", "").strip().lower() in _TRUE
        redis_url = env.get("TODO_REDIS_URL") or None
        prefix = env.get("TODO_REDIS_PREFIX", "").strip() or DEFAULT_REDIS_PREFIX
        max_body = _max_body(env.get("TODO_MAX_BODY", ""))
        return cls(database_url, secret_key, data_dir, secure, redis_url, prefix, max_body=max_body)


def _max_body(value: str) -> int:
    """``TODO_MAX_BODY``, in bytes (the default if it is empty)."""
    if not value.strip():
        return DEFAULT_MAX_BODY
    try:
        max_body = int(value)
    except ValueError:
        raise ValueError(
            f"TODO_MAX_BODY must be a number of bytes, such as 65536; got {value!r}."
        ) from None
    return _check_max_body(max_body, "TODO_MAX_BODY")


def _check_max_body(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a number of bytes (an int), got {value!r}.")
    if value < MIN_MAX_BODY:
        raise ValueError(
            f"{name} must be at least {MIN_MAX_BODY} bytes (a todo of 500 characters, sent "
            f"by the page's form, can take 6 KB); got {value}."
        )
    return value


def _make_data_dir(path: Path) -> None:
    """Create *path* readable by its owner only (0700), or make it so, with a log line."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        tighten(path, 0o700)


def tighten(path: Path, mode: int) -> None:
    """Take away from *path* the permissions that *mode* does not give, saying so in
    the log (a file made by an older version of the app, or by hand)."""
    current = path.stat().st_mode & 0o777
    if current & ~mode:
        path.chmod(current & mode)
        log.warning(
            "%s was open to others (%04o): now %04o, its owner's only.",
            path,
            current,
            current & mode,
        )


def _stored_secret_key(path: Path) -> str:
    """The key kept in *path*, generated (readable by the owner only) the first time."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        tighten(path, 0o600)
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
        raise RuntimeError(f"{path} is empty: delete it, or set TODO_SECRET_KEY.") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key
