"""Smoke test of benchmarks/bench_middleware.py: the in-process part runs to the end
and reports every case.

No timing is asserted: ``--quick`` numbers are noise. ``--in-process-only``
starts no server and no load generator, so the test needs neither uvicorn nor
wrk, and never touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path

from _bench import row, run_quick

PROTOCOLS = ("asgi", "wsgi")
CASES = {
    "bare": "bare app (no middleware)",
    "floor": "floor: 1 receiver each, called directly",
    "none": "middleware, no receivers",
    "async": "middleware, 1 async receiver each",
    "sync": "middleware, 1 sync receiver each",
    "sync-on-loop": "middleware, 1 sync receiver each, on the loop",
}
# The summary's rows: the floor (one receiver per signal called directly, no
# tocsin), then the middleware with each kind of receivers.
SUMMARY_KINDS = ("floor", "none", "async", "sync", "sync-on-loop")
NUMBER = r"[+-]?[\d,]+\.\d+"


def test_quick_in_process_run_reports_every_case(tmp_path: Path) -> None:
    run = run_quick("bench_middleware.py", tmp_path, "--in-process-only")
    assert "under uvicorn:" not in run.stdout  # no server was run
    for protocol in PROTOCOLS:
        # Each protocol has its own table, with a row of figures for every case.
        table = run.section(f"{protocol} in-process: ")
        assert table, f"no {protocol} table:\n{run.head}"
        for title in CASES.values():
            row(rf"^\s+{re.escape(title)}\s+{NUMBER}\s", table)
        for kind in SUMMARY_KINDS:
            found = row(rf"^\s+{protocol}, {kind}\s+({NUMBER})\s.*$", run.summary)
            # Only the target's row has a verdict, and without a server it has none yet.
            expected = "n/a" if (protocol, kind) == ("asgi", "async") else "-"
            assert found.group(0).split()[-1] == expected, found.group(0)

    data = run.data
    assert data["server"] is None
    assert set(data["in_process"]) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        results = data["in_process"][protocol]
        assert set(results) == set(CASES)
        for kind, result in results.items():
            assert result["title"] == CASES[kind]
            assert isinstance(result["us_per_request"], float)
            assert result["us_per_request"] > 0
    rows = [(r["protocol"], r["receivers"]) for r in data["summary"]]
    assert rows == [(p, k) for p in PROTOCOLS for k in SUMMARY_KINDS]
