"""The public API is exactly what tocsin/__init__.py says it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tocsin

ROOT = Path(__file__).resolve().parent.parent


def test_all_names_are_exported() -> None:
    """Every name in __all__ is importable from tocsin, and nothing else is promised."""
    assert sorted(tocsin.__all__) == [
        "AsyncReceiversInLoopError",
        "Signal",
        "TocsinError",
        "TypedSignal",
        "receiver",
        "typed_signal",
    ]
    for name in tocsin.__all__:
        assert getattr(tocsin, name).__module__ == "tocsin"


def test_version_is_a_string() -> None:
    """tocsin.__version__ is the version the package is built with."""
    assert isinstance(tocsin.__version__, str)
    assert tocsin.__version__.count(".") == 2


def test_core_imports_no_third_party_package() -> None:
    """Importing tocsin pulls in the standard library only: the core has no dependencies."""
    code = (
        "import sys; before = set(sys.modules); import tocsin; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'tocsin'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_quickstart_demo_runs() -> None:
    """The main job of `python3 dev.py run` works and shows each feature it names."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "receipt-1" in result.stdout
    assert "ConnectionError('analytics service is down')" in result.stdout
    assert "asend responses: ['receipt-3', 'stock-ok', 'notified']" in result.stdout
    assert "Error calling flaky_analytics in Signal.send_robust()" in result.stderr
