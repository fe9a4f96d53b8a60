"""The JSON API, fuzzed by schemathesis from its own OpenAPI schema.

Every operation of ``/openapi.json`` gets valid and invalid requests (at most
``EXAMPLES`` of each kind, derandomized, so a run is repeatable), sent to a real
uvicorn server (``live_server``) as a logged-in user. Each answer must not be a
server error, and must be what the schema declares: a declared status code, the
declared content type, a body that matches the declared schema.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import PASSWORD
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = 25  # per operation and generation mode
BUDGET = 90.0  # seconds for the whole test
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def session_cookie(base_url: str) -> str:
    """Register a user, give them a few todos, and return their session cookie."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        user = {"username": "fuzzer", "password": PASSWORD}
        assert http.post("/api/users", json=user).status_code == 201
        assert http.post("/api/session", json=user).status_code == 200
        for text in ("one", "two", "three"):
            assert http.post("/api/todos", json={"text": text}).status_code == 201
        cookie = http.cookies.get("todo_session")
    assert cookie
    return cookie


def test_the_api_has_no_server_errors_and_keeps_to_its_schema(live_server: str) -> None:
    started = time.monotonic()
    cookie = session_cookie(live_server)
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json", timeout=10)

    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"schemathesis cannot read an operation of the schema: {result.err()}")
        operations.append(result.ok())
    labels = sorted(operation.label for operation in operations)
    assert len(labels) == 9, labels
    assert all(" /api/" in label for label in labels), labels

    calls: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}
    failures: dict[str, str] = {}  # a distinct failure, and a case that shows it

    def fuzz(operation: Operation) -> None:
        label = operation.label
        strategy = st.one_of(
            [
                operation.as_strategy(generation_mode=mode)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            ]
        )

        @settings(
            max_examples=2 * EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report what failed
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def call(case: Case[Any]) -> None:
            response = case.call(base_url=live_server, cookies={"todo_session": cookie}, timeout=10)
            calls[label] = calls.get(label, 0) + 1
            statuses.setdefault(label, set()).add(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, FailureGroup) as failure:
                found = failure.exceptions if isinstance(failure, FailureGroup) else (failure,)
                kinds = ", ".join(sorted({type(f).__name__ for f in found}))
                key = f"{label} -> {response.status_code}: {kinds}"
                if key not in failures:
                    failures[key] = f"{failure}\n{case.as_curl_command()}"

        call()

    # Logging out ends the fuzzer's session on the server (and a password change
    # could): those go last, so that the other operations run logged in.
    ending = {"DELETE /api/session", "PUT /api/session/password"}
    for operation in sorted(operations, key=lambda operation: operation.label in ending):
        fuzz(operation)
        if time.monotonic() - started > BUDGET:
            pytest.fail(f"schemathesis took longer than {BUDGET:.0f} s (at {operation.label})")

    assert not failures, "\n".join(failures) + "\n\n" + "\n\n".join(failures.values())
    assert set(calls) == set(labels)
    assert all(status < 500 for codes in statuses.values() for status in codes), statuses
    # the fuzzing reached the todos themselves, not only the 401/422 answers
    assert 200 in statuses["GET /api/todos"]
    assert 201 in statuses["POST /api/todos"]
