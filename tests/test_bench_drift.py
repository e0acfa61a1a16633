"""Keeps bench/drift.py alive: its --quick mode runs (peers only where their venvs exist) and ends with the JSON
line every bench prints. Speed is never asserted here; that ours agrees with Evidently is."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_drift_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "drift.py"), "--quick"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "drift" and result["quick"] is True
    assert set(result) >= {"ours", "baseline", "ratio", "goal", "met", "peak_mb"}
    assert result["ours"] > 0
    ours_line = next(line for line in out.stdout.splitlines() if line.startswith("ours "))
    assert ours_line.split()[-1] == "5"  # every shifted column, and only those, drifted
    if result["evidently_max_abs_diff"] is not None:
        assert result["evidently_max_abs_diff"] <= 1e-9, out.stdout
