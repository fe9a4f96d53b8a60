"""The Todo app under a login flood, against a real uvicorn on SQLite and PostgreSQL.

Failures cost the attacker, not the other users: dozens of concurrent bad logins
(known and unknown usernames, from one address and from many) get 401 or 429
only, while a logged-in user's requests stay fast; the throttle is exact, so no
more wrong passwords are checked than its limits allow, however many arrive at
once; and the owner's own browser still logs in while their account is under
attack. Connections come from several loopback addresses (127.0.0.x), which the
app sees as different clients.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, serving
from fastapi import FastAPI

from todo import auth, throttle

WRONG = "a wrong guess 123"


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    application: FastAPI = request.getfixturevalue(
        "app" if request.param == "sqlite" else "postgres_app"
    )
    with serving(application) as url:
        yield url


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every password check the app makes, by its outcome (the server runs in this
    process, in threads)."""
    made: list[bool] = []
    lock = threading.Lock()
    verify = auth._verify

    def counted(password_hash: str, password: str) -> bool:
        valid = verify(password_hash, password)
        with lock:
            made.append(valid)
        return valid

    monkeypatch.setattr(auth, "_verify", counted)
    return made


def client(base_url: str, address: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client connecting from *address* (any 127.0.0.0/8 address is local)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=60)


def create_user(base_url: str, username: str) -> None:
    with client(base_url) as http:
        body = {"username": username, "password": PASSWORD}
        assert http.post("/api/users", json=body).status_code == 201


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run *calls* in threads released together; their results, in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait(20)
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def bad_login(base_url: str, username: str, address: str) -> Callable[[], int]:
    def call() -> int:
        with client(base_url, address) as http:
            body = {"username": username, "password": WRONG}
            return http.post("/api/session", json=body).status_code

    return call


def test_a_flood_of_bad_logins_costs_the_other_users_nothing(server: str) -> None:
    create_user(server, "victim")
    create_user(server, "worker")
    latencies: list[float] = []
    statuses: list[int] = []
    flooding = threading.Event()

    def use_the_app() -> None:
        """A logged-in user's CRUD, as long as the flood lasts (and at least 20 requests)."""
        with client(server, "127.0.0.200") as http:
            body = {"username": "worker", "password": PASSWORD}
            assert http.post("/api/session", json=body).status_code == 200
            while flooding.is_set() or len(latencies) < 20:
                started = time.perf_counter()
                created = http.post("/api/todos", json={"text": "keep working"})
                todo = created.json()["id"] if created.status_code == 201 else 0
                done = http.patch(f"/api/todos/{todo}", json={"done": True})
                listed = http.get("/api/todos")
                latencies.append((time.perf_counter() - started) / 3)
                statuses.extend(r.status_code for r in (created, done, listed))

    worker = threading.Thread(target=use_the_app)
    flood = [
        bad_login(server, "victim" if i % 2 else f"nobody{i}", f"127.0.0.{1 + i % 4}")
        for i in range(48)
    ]
    flooding.set()
    worker.start()
    try:
        answers = at_once(flood)
    finally:
        flooding.clear()
        worker.join(120)
    assert set(answers) <= {401, 429}, answers
    assert 429 in answers  # 12 attempts on "victim" per address, limit 5
    assert set(statuses) == {200, 201}, statuses
    assert max(latencies) < 2.0, f"slowest request {max(latencies):.2f} s"
    assert statistics.median(latencies) < 0.5, f"median {statistics.median(latencies):.2f} s"


def test_concurrent_guesses_never_get_more_checks_than_the_limit(
    server: str, checks: list[bool]
) -> None:
    create_user(server, "victim")
    checks.clear()  # registering checked nothing; be sure
    answers = at_once([bad_login(server, "victim", "127.0.0.9") for _ in range(12)])
    assert sorted(answers) == [401] * 5 + [429] * 7
    assert checks == [False] * throttle.USER_CLIENT_LIMIT
    # during the lock, more guesses are refused without a check, and do not extend it
    answers = at_once([bad_login(server, "victim", "127.0.0.9") for _ in range(20)])
    assert answers == [429] * 20
    assert len(checks) == throttle.USER_CLIENT_LIMIT


def test_guesses_from_many_addresses_are_bounded_and_the_owner_still_logs_in(
    server: str, checks: list[bool]
) -> None:
    create_user(server, "victim")
    with client(server, "127.0.0.100") as owner:
        body = {"username": "victim", "password": PASSWORD}
        assert owner.post("/api/session", json=body).status_code == 200
        assert owner.delete("/api/session").status_code == 204
        checks.clear()
        guesses = [bad_login(server, "victim", f"127.0.1.{i}") for i in range(1, 41)]
        answers = at_once(guesses)
        assert answers.count(401) == throttle.USER_LIMIT
        assert answers.count(429) == 40 - throttle.USER_LIMIT
        assert checks.count(False) == throttle.USER_LIMIT
        # a browser that never logged in as victim is refused; the owner's is not
        with client(server, "127.0.2.1") as stranger:
            assert stranger.post("/api/session", json=body).status_code == 429
        assert owner.post("/api/session", json=body).status_code == 200
        assert owner.get("/api/todos").status_code == 200
