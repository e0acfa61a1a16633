"""How long `appliance up` takes to answer its first request, beside a bare `python -c pass`.

Each run starts a daemon on a fresh home and a free port, polls /api/v1/health with the token until it
answers 200, then stops it with SIGTERM. Goal: under 2 s to ready on the development machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

GOAL_S = 2.0


def time_python_pass() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def time_daemon_ready() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "--home", str(home), "up", "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {proc.returncode}")
                try:
                    info = json.loads((home / "daemon.json").read_text())
                    token = (home / "token").read_text().strip()
                    r = httpx.get(info["url"] + "/api/v1/health", headers={"Authorization": f"Bearer {token}"},
                                  timeout=1)
                    if r.status_code == 200:
                        return time.perf_counter() - start
                except (OSError, ValueError, KeyError, httpx.HTTPError):
                    pass
                time.sleep(0.005)
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one run each (for the test that keeps this bench alive)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    runs = 1 if args.quick else args.runs
    time_daemon_ready()  # warm the OS file cache so every measured run starts alike
    ours = [time_daemon_ready() for _ in range(runs)]
    base = [time_python_pass() for _ in range(runs)]
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"{'what':<28}{'median s':>10}{'min s':>10}{'max s':>10}")
    print(f"{'appliance up -> ready':<28}{ours_s:>10.3f}{min(ours):>10.3f}{max(ours):>10.3f}")
    print(f"{'python -c pass':<28}{base_s:>10.3f}{min(base):>10.3f}{max(base):>10.3f}")
    print(json.dumps({"bench": "startup", "unit": "s", "ours": round(ours_s, 4), "baseline": round(base_s, 4),
                      "ratio": round(ours_s / base_s, 2), "goal": GOAL_S, "met": ours_s < GOAL_S}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
