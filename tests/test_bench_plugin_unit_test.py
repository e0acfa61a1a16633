"""Keeps bench/plugin_unit_test.py alive: its --quick mode runs and ends with the JSON line every bench prints."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_plugins_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "plugin_unit_test.py"), "--quick"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "plugins"
    assert set(result) >= {"ours", "baseline", "ratio", "goal", "met"}
    assert result["baseline"] > result["ours"] > 0
