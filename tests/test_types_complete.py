"""tocsin's public API is fully typed, as ``pyright --verifytypes`` rates it.

Every public function, class, attribute and module variable must have a declared
type, so that all type checkers read it alike (blinker runs the same check).
Types from other packages (SQLAlchemy, OpenTelemetry, redis-py) are not ours to
fix: ``--ignoreexternal``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tocsin


def verifytypes() -> dict[str, Any]:
    """pyright's report on the tocsin that this Python imports (an editable install too)."""
    bin_dir = Path(sys.executable).parent
    pyright = bin_dir / "pyright"
    if not pyright.exists():
        pytest.fail(
            f"pyright is not installed next to {sys.executable}; it is in tocsin's test "
            f"dependencies: pip install -e '.[test]'"
        )
    # --verifytypes finds the package through the Python on PATH (it ignores
    # --pythonpath): put this environment's first, as an activated venv does.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["VIRTUAL_ENV"] = str(Path(sys.prefix))
    command = [str(pyright), "--outputjson", "--verifytypes", "tocsin", "--ignoreexternal"]
    # Run outside the project, so that only the installed package can be found.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=bin_dir, env=env, check=False
    )
    try:
        # Skip whatever a first run prints before the report (download progress).
        report: dict[str, Any] = json.loads(result.stdout[result.stdout.find("{") :])
    except json.JSONDecodeError:
        pytest.fail(
            f"pyright could not run (exit status {result.returncode}).\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    return report


def test_public_api_is_completely_typed() -> None:
    """Every symbol of the public API has a known, unambiguous type: a score of 100 %."""
    completeness = verifytypes()["typeCompleteness"]
    package = Path(tocsin.__file__).parent
    assert Path(completeness["packageRootDirectory"]) == package, (
        f"pyright checked {completeness['packageRootDirectory']!r}, not the tocsin this "
        f"Python imports ({package}): is tocsin installed in {sys.prefix}?"
    )
    incomplete = [
        f"{symbol['name']}: {diagnostic['message']}"
        for symbol in completeness["symbols"]
        if not symbol["isTypeKnown"] or symbol["isTypeAmbiguous"]
        for diagnostic in symbol["diagnostics"]
        if diagnostic["severity"] == "error"
    ]
    assert not incomplete, "\n".join(incomplete)
    assert completeness["completenessScore"] == 1
