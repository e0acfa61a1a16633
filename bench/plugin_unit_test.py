"""How long a plugin's unit test takes: in-process (``InProcessApp``, the ``appliance_app`` fixture) against a
daemon in a subprocess (``DaemonProcess``, the ``appliance_daemon`` fixture).

The plugin under test is a drop-in with a migration, a route and a job kind, loaded the same way by both. One
"unit test" is what a plugin author writes: start the appliance with a fresh home, call the route a few times
with seeded inputs, run one job and check its result, stop. Each mode runs the same tests; the figure is the
median wall time of one. Goal: the in-process test at least 50 times faster.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_X = 50.0

PLUGIN = '''\
from appliance import JobKind, Migrations, Option, Options, Route, hookimpl

APPLIANCE_CONTRACT = "1.1"

migrations = Migrations("bench_plugin")


@migrations()
def m001(db):
    db.execute("create table bench_plugin_calls (id integer primary key, v text)")


def echo(request):
    request.app.catalog.db.execute("insert into bench_plugin_calls (v) values (?)", [request.query["v"]])
    return {"v": request.query["v"]}


def add(job):
    return {"sum": sum(job.params["numbers"])}


@hookimpl
def register_migrations(register):
    register(migrations)


@hookimpl
def register_routes(register):
    register(Route("GET", "/bench/echo", echo))


@hookimpl
def register_job_kinds(register):
    register(JobKind("bench-sum", add, options=Options(Option("numbers", list[int], []))))
'''


def cases(seed: int, n: int) -> list[tuple[list[str], list[int]]]:
    rng = random.Random(seed)
    return [([f"{rng.randrange(10**6):06d}" for _ in range(5)], [rng.randrange(1000) for _ in range(20)])
            for _ in range(n)]


def project(root: Path) -> Path:
    (root / "project" / "plugins").mkdir(parents=True)
    (root / "project" / "plugins" / "bench_plugin.py").write_text(PLUGIN)
    (root / "project" / "appliance.toml").write_text("")
    return root / "project"


def unit_test(api, values: list[str], numbers: list[int]) -> None:
    for v in values:
        assert api.get("/bench/echo", params={"v": v}).json() == {"v": v}
    job = api.wait_job(api.submit("bench-sum", {"numbers": numbers})["id"])
    assert job["result"] == {"sum": sum(numbers)}, job
    assert not api.get("/plugins").json()["failures"]


def in_process(case) -> float:
    from appliance.testing import InProcessApp

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with InProcessApp(Path(tmp) / "home", project(Path(tmp))) as app:
            unit_test(app, *case)
        return time.perf_counter() - start


def subprocess_daemon(case) -> float:
    from appliance.testing import DaemonProcess

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with DaemonProcess(Path(tmp) / "home", project(Path(tmp))) as d:
            unit_test(d, *case)
        return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a few runs (for the test that keeps this bench alive)")
    ap.add_argument("--runs", type=int, default=7, help="unit tests in a subprocess (five times as many in-process)")
    ap.add_argument("--seed", type=int, default=23)
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs
    # The in-process test is cheap, so it runs five times as often: its median is steadier on a busy box.
    tests = cases(args.seed, 5 * runs)
    in_process(tests[0])  # imports and the blank catalog, paid once per pytest session, not per test
    subprocess_daemon(tests[0])  # the OS file cache warm for the subprocess too
    ours = [in_process(t) for t in tests]
    base = [subprocess_daemon(t) for t in tests[:runs]]
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    ratio = base_s / ours_s
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"one plugin unit test (start, 5 route calls, 1 job, stop): {len(ours)} runs in-process, {runs} in a "
          "subprocess")
    print(f"{'mode':<34}{'median s':>10}{'min s':>10}{'max s':>10}")
    print(f"{'in-process (appliance_app)':<34}{ours_s:>10.4f}{min(ours):>10.4f}{max(ours):>10.4f}")
    print(f"{'subprocess (appliance_daemon)':<34}{base_s:>10.4f}{min(base):>10.4f}{max(base):>10.4f}")
    print(f"in-process is {ratio:.0f}x faster (goal {GOAL_X:.0f}x)")
    print(json.dumps({"bench": "plugins", "unit": "s", "ours": round(ours_s, 4), "baseline": round(base_s, 4),
                      "ratio": round(ratio, 1), "goal": GOAL_X, "met": ratio >= GOAL_X}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
