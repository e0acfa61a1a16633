"""Keeps bench/serving.py alive: its --quick mode runs ours and the FastAPI baseline and prints the JSON line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package) drives the load; make test installs it")
def test_serving_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "serving.py"), "--quick"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "serving"
    assert result["ours"] > 0 and result["baseline"] > 0 and result["overhead_us"] is not None
