"""benchmarks/_harness.py: the facts every benchmark script prints and keeps in its JSON.

Each script's smoke test (tests/test_bench*.py) runs it; this one checks the facts
themselves, and that the scripts' JSON files carry them.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness  # noqa: E402


def test_the_facts_name_the_date_the_commit_and_the_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    facts = _harness.run_facts()
    when = datetime.datetime.fromisoformat(facts["date"])
    assert when.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 60
    git = ["git", "rev-parse", "--short", "HEAD"]
    head = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False)
    assert facts["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert facts["tocsin_send_path"] in ("compiled", "pure")
    assert facts["python_version"] == ".".join(map(str, sys.version_info[:3]))
    _harness.print_run_facts(facts)
    line = capsys.readouterr().out
    assert line.startswith(f"run      {facts['date']}, commit {facts['commit']}")
    assert f"({facts['tocsin_send_path']} send path)" in line


def test_a_scripts_json_carries_the_facts(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "send-0", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nrun      " in done.stdout
    facts = json.loads(out.read_text())["run"]
    assert {"date", "commit", "load_at_start", "tocsin_send_path"} <= set(facts)
