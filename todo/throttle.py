"""The login throttle: exact limits on password guesses that an attacker cannot
turn against the account's owner.

Designed after django-axes (failures counted per username *and* client, reset on
success, a cool-off) and OWASP's authentication guidance (a lockout threshold
over an observation window, growing lockouts, and device cookies so that a
known browser is not locked out by someone else's guesses).

**Counters.** Every login attempt is charged to a few counters (rows of
``login_throttle``) before its password is checked:

* from a browser holding a valid *device cookie* for the username (one it got at
  a successful login): ``device:<username>:<device>``, limit 5;
* from anywhere else: ``user-client:<username>:<address>``, limit 5, and
  ``user:<username>``, limit 20, shared by every unknown browser and address;
* always, unless the device is known: ``client:<address>``, limit 50, whatever
  the usernames, which also bounds how many counters one address can create.

Registrations are charged to ``register:<address>``, limit 10 per window, before
their password is hashed: a rate limit, with no lock.

**Exact.** A charge is one SQL statement (an upsert whose ``WHERE`` refuses a
full or locked counter), so however many requests arrive at once, a counter
never admits more attempts in its window than its limit: the attempts being
checked count until they are known to have succeeded. A success gives its
charges back (and clears ``device:`` and ``user-client:``); a failure keeps
them, and the ``user_login_failed`` receiver locks a counter that is full.

**Growing locks, never extended.** A full counter is locked for 5 minutes, then
10, 20, 40, capped at 60 for its next lockouts. Attempts refused during a lock
are not counted, so they never extend it. Counters idle for a day are deleted.

**Limits.** Someone guessing one username from many addresses can lock out new
browsers (``user:``) for up to an hour at a time, but not the owner's browsers
that have logged in before. The address is the connection's peer: behind a
proxy, run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` so
that it is the client's.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import LoginThrottle

T = LoginThrottle  # the counters' table, in the SQL below

WINDOW = 15 * 60  # seconds over which failures are counted
LOCK_MINUTES = (5, 10, 20, 40, 60)  # the first, second... lockout; then the last
IDLE = 24 * 3600  # a counter untouched for this long is deleted
PURGE_EVERY = 60.0  # seconds between two purges of idle counters, per process

DEVICE_LIMIT = 5
USER_CLIENT_LIMIT = 5
USER_LIMIT = 20
CLIENT_LIMIT = 50
REGISTER_LIMIT = 10  # accounts created from one address per window

clock: Callable[[], float] = time.time  # the time, as a Unix timestamp (tests set it)


@dataclasses.dataclass(frozen=True)
class Counter:
    key: str
    limit: int
    cleared_on_success: bool


@dataclasses.dataclass
class Attempt:
    """A login attempt's charges; ``refused_until`` is set when a counter refused it."""

    username: str
    counters: list[Counter] = dataclasses.field(default_factory=list)
    refused_until: float | None = None

    @property
    def refused(self) -> bool:
        return self.refused_until is not None


def counters(username: str, address: str, device: str | None) -> list[Counter]:
    """The counters an attempt on *username* (a normalized, lower-case name) from
    *address* is charged to; *device* is the id of a valid device cookie for it."""
    if device is not None:
        return [Counter(f"device:{username}:{device}", DEVICE_LIMIT, True)]
    return [
        Counter(f"client:{address}", CLIENT_LIMIT, False),
        Counter(f"user-client:{username}:{address}", USER_CLIENT_LIMIT, True),
        Counter(f"user:{username}", USER_LIMIT, False),
    ]


def registrations(address: str) -> Counter:
    """The counter of accounts created from *address*: each charge stays (a success
    too), so it is a rate limit; it never locks."""
    return Counter(f"register:{address}", REGISTER_LIMIT, cleared_on_success=False)


def _insert(db: Session) -> Callable[[type[LoginThrottle]], sqlite.Insert | postgresql.Insert]:
    name = db.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise RuntimeError(f"the login throttle supports SQLite and PostgreSQL, not {name}")


def _charge(db: Session, counter: Counter, now: float) -> bool:
    """Count one attempt on *counter* unless it is locked or full: one statement."""
    expired = T.window_start <= now - WINDOW
    statement = (
        _insert(db)(T)
        .values(key=counter.key, failures=1, window_start=now, locked_until=None, lockouts=0)
        .on_conflict_do_update(
            index_elements=[T.key],
            set_={
                "failures": case((expired, 1), else_=T.failures + 1),
                "window_start": case((expired, now), else_=T.window_start),
            },
            where=and_(
                or_(T.locked_until.is_(None), T.locked_until <= now),
                or_(expired, T.failures < counter.limit),
            ),
        )
        .returning(T.failures)
    )
    return db.execute(statement).first() is not None


def _give_back(db: Session, counter: Counter, clear: bool) -> None:
    values = (
        {"failures": 0, "lockouts": 0}
        if clear
        else {"failures": case((T.failures > 0, T.failures - 1), else_=0)}
    )
    db.execute(update(T).where(T.key == counter.key).values(**values))


def _refused_until(db: Session, counter: Counter, now: float) -> float:
    """Until when *counter* refuses: the end of its lock, or of its full window."""
    row = db.execute(
        select(LoginThrottle.locked_until, LoginThrottle.window_start).where(
            LoginThrottle.key == counter.key
        )
    ).first()
    if row is None:  # purged meanwhile
        return now
    locked_until, window_start = row
    if locked_until is not None and locked_until > now:
        return float(locked_until)
    return max(now, float(window_start) + WINDOW)


def reserve(db: Session, attempt: Attempt, wanted: Sequence[Counter]) -> Attempt:
    """Charge *attempt* to each of *wanted*, in order; at the first that refuses,
    give back what was charged and set ``attempt.refused_until``. The caller
    commits *db* before checking the password, so that other requests see it."""
    now = clock()
    _purge(db, now)
    for counter in wanted:
        if not _charge(db, counter, now):
            for charged in attempt.counters:
                _give_back(db, charged, clear=False)
            attempt.counters.clear()
            attempt.refused_until = _refused_until(db, counter, now)
            break
        attempt.counters.append(counter)
    return attempt


def succeeded(db: Session, attempt: Attempt) -> None:
    """The password was right: give the charges back (clearing the counters of this
    browser or address for this username), in *db*'s transaction."""
    for counter in attempt.counters:
        _give_back(db, counter, clear=counter.cleared_on_success)
    attempt.counters.clear()


def release(db: Session, attempt: Attempt) -> None:
    """The password was not checked (the server was busy): give the charges back,
    in *db*'s transaction."""
    for counter in attempt.counters:
        _give_back(db, counter, clear=False)
    attempt.counters.clear()


def failed(db: Session, attempt: Attempt) -> list[tuple[str, float]]:
    """The password was wrong: the charges stay; lock each counter that is now full.
    Returns the (key, until) of the locks set, in *db*'s transaction."""
    now = clock()
    minutes = case(
        *((T.lockouts == n, m) for n, m in enumerate(LOCK_MINUTES[:-1])),
        else_=LOCK_MINUTES[-1],
    )
    locked = []
    for counter in attempt.counters:
        statement = (
            update(T)
            .where(
                T.key == counter.key,
                T.failures >= counter.limit,
                or_(T.locked_until.is_(None), T.locked_until <= now),
            )
            .values(
                locked_until=now + minutes * 60,
                lockouts=T.lockouts + 1,
                failures=0,
                window_start=now,
            )
            .returning(T.locked_until)
        )
        until = db.scalar(statement)
        if until is not None:
            locked.append((counter.key, until))
    attempt.counters.clear()
    return locked


class _Purger:
    """Deletes counters idle for a day, at most once a minute per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, db: Session, now: float) -> None:
        with self._lock:
            if now - self._last < PURGE_EVERY:
                return
            self._last = now
        db.execute(
            delete(T).where(
                T.window_start < now - IDLE,
                or_(T.locked_until.is_(None), T.locked_until < now),
            )
        )


_purge = _Purger()


__all__ = [
    "CLIENT_LIMIT",
    "DEVICE_LIMIT",
    "LOCK_MINUTES",
    "REGISTER_LIMIT",
    "USER_CLIENT_LIMIT",
    "USER_LIMIT",
    "WINDOW",
    "Attempt",
    "Counter",
    "counters",
    "failed",
    "registrations",
    "release",
    "reserve",
    "succeeded",
]
