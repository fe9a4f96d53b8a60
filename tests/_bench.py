"""What the benchmark scripts' smoke tests share (tests/test_bench*.py): run a script of
benchmarks/ in its quick mode with a JSON file, check that it ran to the end and kept the
facts of its run, and read its report by section.

No timing is ever asserted on a quick run: its numbers are noise. The scripts check,
untimed, that every case reaches what it should, and fail otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _harness as harness  # noqa: E402

__all__ = ["BENCHMARKS", "ROOT", "QuickRun", "harness", "row", "run_quick"]

# What every script's JSON file keeps under "run" (benchmarks/_harness.py, run_facts()).
FACTS = {"date", "commit", "uncommitted_changes", "load_at_start", "tocsin_send_path"}


@dataclass
class QuickRun:
    """A script's output and its JSON file."""

    stdout: str
    data: dict[str, Any]

    def section(self, title: str) -> str:
        """The report's section that starts ``== <title>``, up to the next one ("" if none)."""
        return self.stdout.partition(f"== {title}")[2].partition("\n== ")[0]

    @property
    def head(self) -> str:
        """Everything before the summary."""
        return self.stdout.partition("== SUMMARY")[0]

    @property
    def summary(self) -> str:
        """The summary, the last section: everything after ``== SUMMARY``."""
        _, sep, summary = self.stdout.partition("== SUMMARY")
        assert sep, f"no summary:\n{self.stdout}"
        return summary


def run_quick(
    script: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> QuickRun:
    """``benchmarks/<script> --quick <args> --json <file>``, which must succeed, print its
    header (``Python ...``) first, and write a quick run's JSON file with the run's facts."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Python "), proc.stdout
    assert "\nrun      " in proc.stdout, proc.stdout  # the facts of the run, in the header
    data = harness.read_json(out)
    assert data["mode"] == "quick"
    assert set(data["run"]) >= FACTS, data["run"]
    return QuickRun(proc.stdout, data)


def row(pattern: str, text: str) -> re.Match[str]:
    """The line of *text* that *pattern* matches (``^`` and ``$`` match at each line)."""
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"no line matches {pattern!r} in:\n{text}"
    return found
