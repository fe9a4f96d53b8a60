"""What the benchmark scripts share: the facts of a run, printed in its header and kept in
its JSON file, so that every figure can be traced to a date, a commit and a machine state.

The scripts import it from their own folder (``python benchmarks/bench.py`` puts it on
``sys.path``).
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def send_path(package: str = "tocsin") -> str:
    """ "compiled" or "pure": which send path the tocsin *package* uses (its _compiled
    module); "unknown" if it cannot be imported. bench.py also asks it of its copies."""
    try:
        compiled = importlib.import_module(f"{package}._compiled")
    except ImportError:
        return "unknown"
    return "pure" if compiled.speedups is None else "compiled"


def run_facts() -> dict[str, Any]:
    """The date (UTC), the commit (and whether src/ or benchmarks/ have uncommitted
    changes), Python, the platform, the load average, tocsin's version and send path."""
    status = _git("status", "--porcelain", "--", "src", "benchmarks")
    try:
        tocsin = metadata.version("tocsin")
    except metadata.PackageNotFoundError:
        tocsin = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": None if status is None else bool(status),
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "tocsin_version": tocsin,
        "tocsin_send_path": send_path(),
        "argv": sys.argv[1:],
    }


def print_run_facts(facts: dict[str, Any]) -> None:
    """One line: ``run      <date>, commit <commit>, load <1 5 15>; tocsin <v> (<path>)``."""
    commit = facts["commit"] or "unknown"
    if facts["uncommitted_changes"]:
        commit += " with uncommitted changes"
    load = facts["load_at_start"]
    shown = " ".join(f"{x:.2f}" for x in load) if load else "unknown"
    print(
        f"run      {facts['date']}, commit {commit}, load {shown}; "
        f"tocsin {facts['tocsin_version']} ({facts['tocsin_send_path']} send path)"
    )
