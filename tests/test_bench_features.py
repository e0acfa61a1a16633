"""Keeps bench/features.py and bench/online.py alive: their --quick modes run and end with the JSON line every
bench prints. Speed is never asserted here; that the sides agree is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("bench", ["features", "online"])
def test_feature_store_bench_quick_runs_and_reports(bench):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / f"{bench}.py"), "--quick"], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == bench
    assert set(result) >= {"ours", "baseline", "ratio", "goal", "met"}
    assert result["ours"] > 0
    if bench == "features":
        assert result["results_equal"], out.stdout  # ours matches raw DuckDB (and Feast, when it ran)
    elif result["values_equal"] is not None:
        assert result["values_equal"], out.stdout
