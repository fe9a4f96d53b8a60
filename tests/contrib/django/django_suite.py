"""Run Django's own test suites with every Django signal on tocsin.

    python tests/contrib/django/django_suite.py [--list-skips] [LABEL ...]

Django's tests are not in its wheel: the sdist of the installed Django version
is downloaded from PyPI once (pip download) into .cache/django-src/ and
extracted there. Then, in this process, tocsin.contrib.django.install() turns
the integration on, the tests listed in django_skips.toml for this Django
version are marked skipped (they assert behaviour tocsin deliberately changes;
the file says why), and Django's runner (tests/runtests.py, with its own
test_sqlite settings) runs the signal-related suites, or the LABELs given.
Workers are forked, so they inherit the integration.

It fails if the integration is not on (Django's signals must be tocsin Signals,
and Django's own sends must go through tocsin), or if a listed skip does not
match a test in the suites run, so that the list stays exact.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tarfile
import tomllib
import unittest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache" / "django-src"
SKIPS = Path(__file__).with_name("django_skips.toml")
# Processes for Django's runner (its failure reports need tblib when more than one).
PARALLEL = int(os.environ.get("TOCSIN_DJANGO_PARALLEL", "1"))
# The suites that send or receive signals: model, m2m, migration, request,
# connection, setting and login signals, and the system check that reports
# lazy senders that never resolved (auth_tests: the modules that log in or
# out; the rest takes a minute, hashing passwords).
LABELS = (
    "signals",
    "dispatch",
    "m2m_signals",
    "delete",
    "delete_regress",
    "save_delete_hooks",
    "update_only_fields",
    "proxy_models",
    "generic_relations",
    "generic_relations_regress",
    "many_to_many",
    "defer_regress",
    "multiple_database",
    "invalid_models_tests",
    "fixtures",
    "transactions",
    "transaction_hooks",
    "migrate_signals",
    "contenttypes_tests",
    "backends.base",
    "backends.tests",
    "settings_tests",
    "test_utils",
    "handlers",
    "requests_tests",
    "httpwrappers",
    "wsgi",
    "builtin_server",
    "test_client",
    "test_client_regress",
    "asgi",
    "sites_tests",
    "auth_tests.test_signals",
    "auth_tests.test_auth_backends",
    "auth_tests.test_models",
    "auth_tests.test_remote_user",
    "auth_tests.test_views",
    "auth_tests.test_middleware",
    "model_fields.test_imagefield",
)


def main(argv: list[str]) -> int:
    import django

    version = django.get_version()
    if argv[:1] == ["--list-skips"]:
        for test, reason in skips_for(version).items():
            print(f"{test}\n    {reason}")
        return 0
    tests = sources(version) / "tests"
    labels = argv or list(LABELS)
    skips = {test: reason for test, reason in skips_for(version).items() if selected(test, labels)}
    turn_on()
    found = skip_listed(skips)
    # Workers inherit the integration only if forked (3.14 defaults to forkserver).
    multiprocessing.set_start_method("fork", force=True)
    sys.path.insert(0, str(tests))
    sys.argv = [str(tests / "runtests.py"), f"--parallel={PARALLEL}", *labels]
    code = 0
    try:
        runpy.run_path(str(tests / "runtests.py"), run_name="__main__")
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    missing = sorted(set(skips) - found)
    if missing:
        print(f"django_skips.toml lists tests that were not run: {missing}", file=sys.stderr)
        code = code or 1
    sends = sends_through_tocsin()
    if sends != ["send", "send_robust"]:
        print(f"Django's override_settings() did not send through tocsin: {sends}", file=sys.stderr)
        code = code or 1
    print(
        f"Django {version}, every signal on tocsin: override_settings() sent setting_changed "
        f"through tocsin ({sends}); {len(skips)} tests skipped by django_skips.toml."
    )
    return code


def sources(version: str) -> Path:
    """Django's released sources, extracted once from the sdist on PyPI."""
    target = CACHE / f"django-{version}"
    if (target / "tests" / "runtests.py").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"django-{version}.tar.gz"
    if not sdist.exists():
        subprocess.check_call(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"django=={version}", "--dest", str(CACHE)),
            ]
        )
    with tarfile.open(sdist) as archive:
        archive.extractall(CACHE, filter="data")
    return target


def skips_for(version: str) -> dict[str, str]:
    """The tests django_skips.toml lists for this Django version, with their reason."""
    series = ".".join(version.split(".")[:2])
    entries = tomllib.loads(SKIPS.read_text())["skip"]
    return {e["test"]: e["reason"] for e in entries if series in e.get("django", [series])}


def selected(test: str, labels: list[str]) -> bool:
    return any(test == label or test.startswith(label + ".") for label in labels)


def turn_on() -> None:
    """Install the integration, and check that Django's signals are tocsin's."""
    from django.core.signals import request_finished
    from django.db.models.signals import post_save

    import tocsin
    from tocsin.contrib.django import install

    install()
    for signal in (post_save, request_finished):
        assert isinstance(signal, tocsin.Signal), f"{signal!r} is not a tocsin Signal"


def sends_through_tocsin() -> list[str]:
    """After the run: the sends of ``setting_changed`` that Django's own
    ``override_settings()`` makes, as a tocsin hook on the signal sees them.

    (A hook stays installed only for this check: an installed hook moves sends
    off tocsin's fast path, which would change the call stack that Django's
    tests inspect, for one.)
    """
    from django.test.signals import setting_changed
    from django.test.utils import override_settings

    from tocsin import hooks

    seen: list[str] = []

    class Watch(hooks.SendHook):
        def observe(self, send: hooks.SendInfo) -> None:
            seen.append(send.method)

    undo = hooks.install(Watch(), setting_changed)
    try:
        with override_settings(TOCSIN_CHECK=True):
            pass
    finally:
        undo()
    return seen


def skip_listed(skips: dict[str, str]) -> set[str]:
    """Make Django's runner mark the listed tests skipped, with their reason;
    the returned set fills with those it found."""
    from django.test.runner import DiscoverRunner
    from django.test.utils import iter_test_cases

    found: set[str] = set()
    build_suite = DiscoverRunner.build_suite

    def build_suite_with_skips(self: Any, *args: Any, **kwargs: Any) -> Any:
        suite = build_suite(self, *args, **kwargs)
        for test in iter_test_cases(suite):
            reason = skips.get(test.id())
            if reason is not None:
                found.add(test.id())
                method = getattr(type(test), test._testMethodName)
                skipped = unittest.skip(f"tocsin: {reason}")(method)
                setattr(type(test), test._testMethodName, skipped)
        return suite

    DiscoverRunner.build_suite = build_suite_with_skips
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
