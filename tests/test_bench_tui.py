"""Keeps bench/tui.py alive: its --quick mode runs and ends with the JSON line every bench prints."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tui_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "tui.py"), "--quick"], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "tui"
    assert set(result) >= {"ours", "baseline", "ratio", "goal", "met", "events_per_s", "repaints_per_s"}
    assert result["ours"] > 0 and result["baseline"] > 0 and result["events_per_s"] > 0
    assert len(result["key_p95_ms"]) == 10 and all(ms > 0 for ms in result["key_p95_ms"].values())
    assert set(result["refresh_ms"]) == {"jobs", "experiments", "overview"} and len(result["memory_mib"]) == 2
