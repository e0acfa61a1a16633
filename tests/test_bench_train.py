"""Keeps bench/train.py alive: its --quick mode runs and ends with the JSON line every bench prints.

Speed is never asserted here; that every metric the bench logged was committed is (the bench checks it).
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "train.py"), "--quick"], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "train"
    assert set(result) >= {"ours", "baseline", "ratio", "goal", "met"}
    assert result["ours"] > 0 and result["per_call_us"] > 0
    assert result["trainer"]["ours_samples_s"] > 0 and result["trainer"]["plain_samples_s"] > 0
