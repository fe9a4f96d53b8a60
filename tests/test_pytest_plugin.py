"""Tests of ``tocsin.pytest_plugin``, through pytest's own ``pytester``.

Each test writes a small test module, runs pytest on it (in this process, with
the plugin loaded from its ``pytest11`` entry point as in any project that
installs tocsin) and checks the outcomes and what pytest printed.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

# The top of every generated test module: a signal, a model and its receivers.
HEADER = """
from unittest.mock import Mock

import pytest

from tocsin import Signal
from tocsin.testing import ANY

saved = Signal()
calls = []


class Todo:
    pass


def on_save(sender, **kwargs):
    calls.append("on_save")


saved.connect(on_save)


def save(todo, created=True):
    saved.send(Todo, instance=todo, created=created)
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_module=HEADER + body)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    """What makes pytest load it in every project that installs tocsin."""
    found = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "tocsin"]
    assert [ep.value for ep in found] == ["tocsin.pytest_plugin"], (
        "tocsin's pytest11 entry point is not installed: reinstall tocsin (pip install -e .)"
    )


def test_signal_capture_records_and_asserts(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_capture(signal_capture):
    sent = signal_capture(saved, sender=Todo)
    todo = Todo()
    save(todo)
    sent.assert_sent_once_with(Todo, instance=todo, created=True)
    sent.assert_sent(created=ANY)


def test_the_capture_ended_with_the_test():
    assert saved.receivers[0].receiver() is on_save
    assert len(saved.receivers) == 1
""",
    )
    result.assert_outcomes(passed=2)


def test_a_failed_assertion_says_what_was_sent(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_capture(signal_capture):
    sent = signal_capture(saved)
    save("first", created=False)
    sent.assert_sent_once_with(Todo, instance="first", created=True)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * AssertionError: Expected test_module.saved to have been sent once with "
            "send(sender=<class 'test_module.Todo'>, instance='first', created=True).",
            "E * It was sent once:",
            "E *   send(sender=<class 'test_module.Todo'>, instance='first', created=False)",
            "E * Differences:",
            "E *   created: expected True, sent False",
        ]
    )
    # The helper's own frames are hidden from the traceback.
    assert "def assert_sent_once_with" not in result.stdout.str()


def test_signal_muted_mutes_until_the_end_of_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_muted(signal_muted):
    signal_muted(saved)
    assert saved.send(Todo) == []
    assert calls == []


def test_local(signal_muted):
    signal_muted(saved, local=True)
    save(Todo())
    assert calls == []


def test_restored():
    save(Todo())
    assert calls == ["on_save"]
""",
    )
    result.assert_outcomes(passed=3)


def test_signal_connected_connects_until_the_end_of_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_connected(signal_connected):
    spy = signal_connected(Mock(), saved, sender=Todo)
    local_spy = signal_connected(Mock(), saved, local=True)
    todo = Todo()
    save(todo)
    spy.assert_called_once_with(signal=saved, sender=Todo, instance=todo, created=True)
    local_spy.assert_called_once()


def test_disconnected():
    assert [row.receiver() for row in saved.receivers] == [on_save]
""",
    )
    result.assert_outcomes(passed=2)


def test_helpers_end_in_reverse_order_whichever_fixture_started_them(
    pytester: pytest.Pytester,
) -> None:
    """The factories share one stack, so a capture started before a mute ends after it."""
    result = run(
        pytester,
        """
def test_mixed(signal_muted, signal_capture):
    sent = signal_capture(saved)
    signal_muted(saved)
    save(Todo())
    sent.assert_not_sent()


def test_restored():
    assert [row.receiver() for row in saved.receivers] == [on_save]
""",
    )
    result.assert_outcomes(passed=2)


def test_a_failing_test_still_restores_the_signal(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_fails(signal_muted, signal_capture):
    signal_muted(saved)
    signal_capture(saved)
    raise RuntimeError("the test failed")


def test_restored():
    assert [row.receiver() for row in saved.receivers] == [on_save]
""",
    )
    result.assert_outcomes(passed=1, failed=1)


LEAKY = """
def test_leaks():
    saved.connect(Mock(), weak=False)


def test_cleans_up():
    spy = Mock()
    saved.connect(spy, weak=False)
    saved.disconnect(spy)


def test_restored_by_fixtures(signal_muted, signal_connected):
    signal_muted(saved)
    signal_connected(Mock(), saved)
"""


def test_the_registry_check_is_off_by_default(pytester: pytest.Pytester) -> None:
    result = run(pytester, LEAKY)
    result.assert_outcomes(passed=3)


def test_the_registry_check_ini_option(pytester: pytest.Pytester) -> None:
    """A test that leaves a connection errors at teardown, saying which."""
    pytester.makeini("[pytest]\ntocsin_registry_check = true\n")
    result = run(pytester, LEAKY)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "the test left signal receivers changed (tocsin_registry_check):",
            "  test_module.saved: connected unittest.mock.Mock instance (strong, any sender)",
        ]
    )


def test_the_registry_check_ignores_the_receivers_named(pytester: pytest.Pytester) -> None:
    """tocsin_registry_check_ignore: patterns of receiver names left out of the check
    (Django's test client moves django.db.close_old_connections on every request)."""
    pytester.makeini(
        "[pytest]\ntocsin_registry_check = true\n"
        "tocsin_registry_check_ignore =\n    unittest.mock.*\n    other.*\n"
    )
    result = run(
        pytester,
        LEAKY
        + """

def test_still_checked():
    saved.disconnect(on_save)
""",
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_still_checked*",
            "  test_module.saved: disconnected test_module.on_save (weak, any sender)",
        ]
    )


def test_the_registry_check_marker(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
@pytest.mark.tocsin_registry_check
def test_checked():
    saved.disconnect(on_save)


def test_not_checked():
    saved.connect(on_save)
""",
        "--strict-markers",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["  test_module.saved: disconnected test_module.on_save (weak, any sender)"]
    )


def test_the_marker_exempts_a_test_from_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntocsin_registry_check = true\n")
    result = run(
        pytester,
        """
pytestmark = pytest.mark.tocsin_registry_check(enabled=False)


def test_exempt():
    saved.connect(Mock(), weak=False)
""",
    )
    result.assert_outcomes(passed=1)


def test_the_check_ignores_fixtures_of_a_wider_scope(pytester: pytest.Pytester) -> None:
    """A module fixture may connect for many tests: only the test's own changes count."""
    pytester.makeini("[pytest]\ntocsin_registry_check = true\n")
    result = run(
        pytester,
        """
spy = Mock()


@pytest.fixture(scope="module")
def connected():
    saved.connect(spy, weak=False)
    yield
    saved.disconnect(spy)


def test_first(connected):
    pass


def test_second(connected):
    pass
""",
    )
    result.assert_outcomes(passed=2)


def test_a_wrong_marker_argument_is_reported(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
@pytest.mark.tocsin_registry_check("yes")
def test_marked():
    pass
""",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*takes True or False*"])


def test_the_fixtures_and_marker_are_documented(pytester: pytest.Pytester) -> None:
    fixtures = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    fixtures.stdout.fnmatch_lines(["signal_capture*", "signal_muted*", "signal_connected*"])
    markers = pytester.runpytest("--markers", "-p", "no:cacheprovider")
    markers.stdout.fnmatch_lines(["@pytest.mark.tocsin_registry_check(enabled=True):*"])


def test_the_plugin_imports_no_helper_until_a_fixture_is_used() -> None:
    """It is loaded by every pytest run of every project that installs tocsin."""
    code = (
        "import sys; import tocsin.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('tocsin.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "tocsin.testing" not in out
    assert "tocsin.tracing" not in out
