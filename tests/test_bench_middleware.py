"""Smoke test of benchmarks/bench_middleware.py: the in-process part runs to the end
and reports every case.

No timing is asserted: ``--quick`` numbers are noise. ``--in-process-only``
starts no server and no load generator, so the test needs neither uvicorn nor
wrk, and never touches the network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_middleware.py"

PROTOCOLS = ("asgi", "wsgi")
CASES = {
    "bare": "bare app (no middleware)",
    "none": "middleware, no receivers",
    "async": "middleware, 1 async receiver each",
    "sync": "middleware, 1 sync receiver each",
    "sync-on-loop": "middleware, 1 sync receiver each, on the loop",
}
NUMBER = r"[+-]?[\d,]+\.\d+"


def test_quick_in_process_run_reports_every_case(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--in-process-only", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Python ")
    assert "under uvicorn:" not in proc.stdout  # no server was run

    head, sep, summary = proc.stdout.partition("== SUMMARY")
    assert sep, proc.stdout
    for protocol in PROTOCOLS:
        # Each protocol has its own table, with a row of figures for every case.
        table = head.partition(f"== {protocol} in-process: ")[2].partition("\n== ")[0]
        assert table, f"no {protocol} table:\n{head}"
        for title in CASES.values():
            assert re.search(rf"^\s+{re.escape(title)}\s+{NUMBER}\s", table, re.MULTILINE), (
                f"no row for {title!r} in the {protocol} table:\n{table}"
            )
        for kind in ("none", "async", "sync", "sync-on-loop"):
            row = re.search(rf"^\s+{protocol}, {kind}\s+({NUMBER})\s.*$", summary, re.MULTILINE)
            assert row is not None, f"no summary row for {protocol}, {kind}:\n{summary}"
            # Only the target's row has a verdict, and without a server it has none yet.
            expected = "n/a" if (protocol, kind) == ("asgi", "async") else "-"
            assert row.group(0).split()[-1] == expected, row.group(0)

    data = json.loads(out.read_text())
    assert data["mode"] == "quick"
    assert data["server"] is None
    assert set(data["in_process"]) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        results = data["in_process"][protocol]
        assert set(results) == set(CASES)
        for kind, result in results.items():
            assert result["title"] == CASES[kind]
            assert isinstance(result["us_per_request"], float)
            assert result["us_per_request"] > 0
    rows = [(row["protocol"], row["receivers"]) for row in data["summary"]]
    assert rows == [(p, k) for p in PROTOCOLS for k in ("none", "async", "sync", "sync-on-loop")]
