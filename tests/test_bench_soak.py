"""Keeps bench/soak.py alive: its --quick mode soaks the demo for three short minutes and prints its JSON line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package) drives the load; make test installs it")
def test_soak_bench_quick_runs_and_reports():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--quick"], capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "soak" and result["minutes"] == 3
    assert len(result["p99_ms"]) == len(result["rss_mb"]) == 3
    assert result["requests"] > 0 and result["offered_rps"] > 0
    assert result["hot_swaps"] >= 2 and result["applies"] == 3
    assert result["jobs"].get("succeeded", 0) > 0 and not set(result["jobs"]) & {"queued", "running"}
    assert isinstance(result["wedged_slots"], int) and isinstance(result["met"], bool)
