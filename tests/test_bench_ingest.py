"""The ingest bench's --quick mode runs end to end, so the script does not rot (speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ingest.py"


def test_bench_ingest_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["format", "rows"] and {lines[1].split()[0], lines[2].split()[0]} == {"csv",
                                                                                                    "parquet"}
    result = json.loads(lines[-1])
    assert result["bench"] == "ingest" and result["goal"] == 0.8 and result["rows"] == 200_000
    assert result["ours"] > 0 and result["baseline"] > 0 and isinstance(result["met"], bool)
