"""The soak: minutes of serving at 70% of the measured peak while the box does all its other work every minute.

The workload is the demo project (plugins/demo, data/demo) on a real daemon in a subprocess: the nightly
pipeline runs once (ingest, materialize, training set, train, promote), then the fraud deployment's peak is
measured with wrk (64 connections, closed loop) and the soak offers a fixed seeded request at 70% of it (wrk
paced on a schedule by a Lua script, ``PACER``). Every minute the bench also writes a new file of transactions
and ingests it, materializes both feature views, trains the spec (which promotes its new version: a hot swap),
moves the champion alias back and forth (two more hot swaps), takes a backup (the home's, pruned to its
``keep``) and applies the project with one setting changed.

Figures, per minute: requests, non-2xx (and socket errors), p50/p99, the daemon's RSS (the median of one
sample a second; the peak beside it) and the store's WAL size; the slopes of p99 (ms/min) and of RSS (MB/min)
by least squares over the minutes after the first (warm-up); jobs by state once the work has drained; wedged
slots: jobs still queued or running after the drain, plus job slots a probe cannot use (as many one-second jobs
as the runner has workers, submitted at once, must all run at once; one GPU-gated job must run).
Goal: zero non-2xx, every job finished, no wedged slot, RSS slope <= 2 MB/min, p99 slope <= 5% of the median
minute's p99 per minute. ``--quick`` runs three 10 s "minutes" on less data (the test that keeps it alive).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.testing import DaemonProcess  # noqa: E402
from plugins.demo.project import generator, lay_out  # noqa: E402

FRACTION = 0.7
WORKERS = 4  # written into the project's [daemon] workers, so the slot probe knows how many there are
CONNECTIONS = 64  # for the peak and the soak: enough in flight for the paced rate at a few ms per answer
STALL_S = 1.0  # a watch request slower than this is reported with what was running
GOAL_RSS_MB_PER_MIN = 2.0
GOAL_P99_SLOPE = 0.05  # of the median minute's p99, per minute
ENDED = ("succeeded", "failed", "cancelled")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}  # wrk's latency units, in ms


# ------------------------------------------------------------------------------------------------ load


#: Paces a wrk thread's requests at RATE req/s over all its connections, whichever connection is free, on a
#: schedule (not a pause after each answer), so a slow answer does not lower the rate the box is offered; after a
#: stall at most a second of missed requests is sent late. wrk is built on LuaJIT: its ffi reads the clock.
PACER = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } soak_timespec; int clock_gettime(int, soak_timespec *); ]]
local ts = ffi.new("soak_timespec")
local interval = 1000 / RATE
local next_at = nil
function delay()
  ffi.C.clock_gettime(1, ts)
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  next_at = math.max(next_at or now, now - 1000) + interval
  return math.max(0, next_at - now)
end
"""


def wrk(url: str, body: bytes, connections: int, seconds: float, rate: float | None = None) -> dict:
    """One wrk run, closed loop or paced at ``rate`` req/s: requests, req/s, p50/p99 (ms), non-2xx, socket errors
    (a timeout is an answer slower than wrk's 2 s)."""
    script = (f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
              'wrk.headers["Content-Type"] = "application/json"\n')
    if rate:
        script += PACER.replace("RATE", f"{rate:.3f}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        run = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", f.name, url],
                             capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    out = run.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed on {url}: {run.stdout}\n{run.stderr}")

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)]

    most = re.search(r"^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms("50"),
            "p99_ms": ms("99"), "max_ms": float(most.group(1)) * UNITS[most.group(2)],
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
            "socket_error_kinds": dict(zip(("connect", "read", "write", "timeout"),
                                           map(int, sockets.groups()) if sockets else (0, 0, 0, 0), strict=True))}


# ------------------------------------------------------------------------------------------------ the box's work


class Work:
    """The minute's other work, on its own threads, through the control API as a user's scripts would call it."""

    def __init__(self, d: DaemonProcess, project: Path, minute_s: float):
        self.d, self.project, self.minute_s = d, project, minute_s
        self.world = generator().World(seed=7)
        self.jobs: list[int] = []
        self.errors: list[str] = []
        self.swaps = self.applies = 0
        self.actions: list[tuple[float, str]] = []  # (wall time, what) of the swaps, backups and applies
        self._threads: list[threading.Thread] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.d.url}/api/v1", headers={"Authorization": f"Bearer {self.d.token}"},
                            timeout=120)

    def call(self, c: httpx.Client, method: str, path: str, body: dict | None = None) -> dict | None:
        r = c.request(method, path, json=body)
        if r.status_code >= 300:
            self.errors.append(f"{method} {path}: HTTP {r.status_code} {r.text[:200]}")
            return None
        return r.json()

    def submit(self, c: httpx.Client, kind: str, params: dict) -> int | None:
        job = self.call(c, "POST", "/jobs", {"kind": kind, "params": params})
        if job is not None:
            self.jobs.append(job["id"])
            return job["id"]
        return None

    def wait(self, c: httpx.Client, job_id: int | None) -> None:
        while job_id is not None and c.get(f"/jobs/{job_id}", params={"wait": 30}).json()["state"] not in ENDED:
            pass

    def start_minute(self, n: int) -> None:
        for target, args in ((self.pipeline, (n,)), (self.timed, (n,))):
            t = threading.Thread(target=self._guarded, args=(target, args), name=f"soak-work-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def _guarded(self, target, args) -> None:
        try:
            target(*args)
        except Exception as exc:  # a bench reports what broke and carries on with the load
            self.errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

    def pipeline(self, n: int) -> None:
        """New transactions in, ingested; both views materialized; the spec trained (and promoted)."""
        gen = generator()
        rows = gen.transactions(self.world, time.time() - 3600, 1 / 24, 6000, seed=9000 + n)
        gen.write_csv(rows, self.project / "data" / "transactions" / f"soak-{n:04}.csv")
        with self.client() as c:
            self.wait(c, self.submit(c, "ingest", {"source": "transactions"}))
            views = [self.submit(c, "materialize", {"view": v}) for v in ("card_velocity", "merchant_risk")]
            for job_id in views:
                self.wait(c, job_id)
            self.wait(c, self.submit(c, "train_spec", {"spec": "fraud"}))

    def timed(self, n: int) -> None:
        """Two hot swaps, a backup and an apply, spread over the minute."""
        start = time.monotonic()
        with self.client() as c:
            for at, action in ((0.25, self.swap), (0.45, self.backup), (0.65, self.swap), (0.8, self.apply)):
                time.sleep(max(0.0, start + at * self.minute_s - time.monotonic()))
                action(c, n)

    def swap(self, c: httpx.Client, n: int) -> None:
        """Move champion to the version before the one it holds, or to the newest when it holds an older one."""
        model = self.call(c, "GET", "/models/fraud")
        if model is None:
            return
        versions = sorted(v["version"] for v in model["versions"])
        holder = next(v["version"] for v in model["versions"] if "champion" in v.get("aliases", []))
        target = versions[-1] if holder != versions[-1] else (versions[-2] if len(versions) > 1 else holder)
        self.actions.append((time.time(), f"swap to v{target}"))
        if target != holder and self.call(c, "POST", "/models/fraud/aliases/champion",
                                          {"version": target, "reason": f"soak minute {n}"}) is not None:
            self.swaps += 1

    def backup(self, c: httpx.Client, n: int) -> None:
        self.submit(c, "backup", {})

    def apply(self, c: httpx.Client, n: int) -> None:
        toml = self.project / "appliance.toml"
        text = toml.read_text()
        old, new = ('every_s = 30', 'every_s = 31') if n % 2 == 0 else ('every_s = 31', 'every_s = 30')
        toml.write_text(text.replace(f'kind = "box"\n{old}', f'kind = "box"\n{new}'))
        self.actions.append((time.time(), "apply"))
        if self.call(c, "POST", "/apply", {}) is not None:
            self.applies += 1


# ------------------------------------------------------------------------------------------------ the soak


def set_up(tmp: Path, quick: bool) -> tuple[DaemonProcess, Path]:
    project = tmp / "project"
    lay_out(project, days=3 if quick else 10, per_day=2000 if quick else 4000)
    shutil.copy(ROOT / "tests" / "plugins" / "good" / "fixture_jobs.py", project / "plugins")  # the slot probe
    toml = project / "appliance.toml"
    toml.write_text(toml.read_text().replace("[daemon]\n", f"[daemon]\nworkers = {WORKERS}\n", 1))
    d = DaemonProcess(tmp / "home", project).start(timeout=60)
    run = d.post("/pipelines/nightly/run").json()
    run_id = run.get("id") or run.get("run", {}).get("id")
    deadline = time.monotonic() + 600
    while (detail := d.get(f"/pipelines/nightly/runs/{run_id}").json())["status"] in ("queued", "running", "pending"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the nightly pipeline did not finish: {detail}")
        time.sleep(0.5)
    if detail["status"] != "succeeded":
        raise RuntimeError(f"the nightly pipeline {detail['status']}: {detail}")
    while d.get("/deployments/fraud").json().get("state") != "ready":
        time.sleep(0.2)
    return d, project


def request_body() -> bytes:
    from plugins.demo.traffic import Traffic

    body, _ = Traffic("http://unused", generator().World(seed=7), feedback_token="unused", seed=3).request(drifting=False)
    return json.dumps(body).encode()


class Watch(threading.Thread):
    """One request every 0.2 s beside the load, timed on its own: an answer slower than STALL_S (or none) is a
    stall, kept with its wall-clock time so the report can name what the box was doing then."""

    def __init__(self, url: str, body: bytes):
        super().__init__(name="soak-watch", daemon=True)
        self.url, self.body, self.stalls, self.stopped = url, body, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stopped.wait(0.2):
                start = time.time()
                try:
                    status = c.post(self.url, content=self.body,
                                    headers={"Content-Type": "application/json"}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if time.time() - start > STALL_S or status != 200:
                    self.stalls.append({"at": start, "seconds": round(time.time() - start, 2), "status": status})

    def explain(self, jobs: list[dict], actions: list[tuple[float, str]], t0: float) -> list[dict]:
        """Each stall with the jobs running and the bench's actions taken during it (a second either side)."""
        out = []
        for stall in self.stalls:
            lo, hi = stall["at"] - 1, stall["at"] + stall["seconds"] + 1
            busy = [f"{j['kind']} {j['id']}" for j in jobs
                    if j.get("started") and j["started"] < hi and (j.get("finished") or hi) > lo]
            done = [what for at, what in actions if lo <= at <= hi]
            out.append({"at_s": round(stall["at"] - t0, 1), "seconds": stall["seconds"], "status": stall["status"],
                        "jobs": busy, "actions": done})
        return out


class Sampler(threading.Thread):
    """The daemon's RSS, once a second; a minute's figure is the median of its samples, so one moment's
    allocation (a training set being read) does not pass for a trend."""

    def __init__(self, pid: int):
        super().__init__(name="soak-rss", daemon=True)
        self.pid, self.samples, self.stopped = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                with open(f"/proc/{self.pid}/statm") as f:
                    self.samples.append(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
            except OSError:
                return

    def minute(self, since: int) -> tuple[float, float]:
        """Median and peak RSS (MB) of the samples from index ``since`` on."""
        taken = self.samples[since:] or self.samples[-1:]
        return statistics.median(taken), max(taken)


def wal_mb(home: Path) -> float:
    """The store's write-ahead log: rows DuckDB holds in memory until its next checkpoint."""
    wal = home / "store.duckdb.wal"
    return wal.stat().st_size / 2**20 if wal.exists() else 0.0


def slope(values: list[float], minute_s: float) -> float:
    """Least-squares slope per real minute, over the minutes after the first (warm-up) when there are 3+."""
    ys = values[1:] if len(values) >= 3 else values
    if len(ys) < 2:
        return 0.0
    xs = range(len(ys))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    per_step = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return per_step * 60 / minute_s


def probe_slots(d: DaemonProcess, tmp: Path) -> int:
    """Job slots that cannot run a job now: WORKERS one-second jobs at once must all run, and one GPU-gated job."""
    ids = [d.post("/jobs", {"kind": "sleep", "params": {"seconds": 1.5}}).json()["id"] for _ in range(WORKERS)]
    most, end = 0, time.monotonic() + 1.2
    while time.monotonic() < end:
        most = max(most, sum(d.get(f"/jobs/{i}").json()["state"] == "running" for i in ids))
        time.sleep(0.05)
    for i in ids:
        d.wait_job(i)
    gpu = d.post("/jobs", {"kind": "gpu_work", "params": {"log": str(tmp / "gpu-probe.jsonl")}}).json()["id"]
    gpu_stuck = d.wait_job(gpu, timeout=30)["state"] != "succeeded"
    return WORKERS - most + int(gpu_stuck)


def drain(d: DaemonProcess, since: int, timeout: float) -> tuple[dict[str, int], list[dict]]:
    """Jobs created since job ``since``, counted by state and listed, once none is queued or running (or at
    ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for j in d.get("/jobs", params={"limit": 10000}).json() if j["id"] > since]
        states: dict[str, int] = {}
        for j in jobs:
            states[j["state"]] = states.get(j["state"], 0) + 1
        if not (states.get("queued") or states.get("running")) or time.monotonic() > deadline:
            return states, jobs
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="three 10 s minutes, less data (the test's mode)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    minutes, minute_s = (3, 10.0) if args.quick else (args.minutes, 60.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    d = None
    try:
        t0 = time.monotonic()
        d, project = set_up(tmp, args.quick)
        url = f"http://127.0.0.1:{d.info['ports']['serving']}/v2/models/fraud/infer"
        body = request_body()
        wrk(url, body, CONNECTIONS, 1)  # warm
        peak = wrk(url, body, CONNECTIONS, 2 if args.quick else 5)
        rate = FRACTION * peak["rps"]
        print(f"set up in {time.monotonic() - t0:.0f} s; peak {peak['rps']:.0f} req/s (p99 {peak['p99_ms']:.2f} ms); "
              f"soak at {FRACTION:.0%}: {rate:.0f} req/s", file=sys.stderr)
        since = max((j["id"] for j in d.get("/jobs", params={"limit": 1}).json()), default=0)
        work, sampler, watch = Work(d, project, minute_s), Sampler(d.proc.pid), Watch(url, body)
        sampler.start()
        watch.start()
        soak_started = time.time()
        rows = []
        for n in range(minutes):
            work.start_minute(n)
            first = len(sampler.samples)
            r = wrk(url, body, CONNECTIONS, minute_s, rate)
            r["rss_mb"], r["rss_peak_mb"] = sampler.minute(first)
            r["wal_mb"] = wal_mb(d.home)
            rows.append(r)
            print(f"minute {n + 1}: {r['requests']} requests, {r['rps']:.0f} req/s, non-2xx {r['non2xx']}, "
                  f"p99 {r['p99_ms']:.2f} ms, RSS {r['rss_mb']:.0f} MB", file=sys.stderr)
        sampler.stopped.set()
        watch.stopped.set()
        work.join(600)
        states, jobs = drain(d, since, 600)
        stalls = watch.explain(jobs, work.actions, soak_started)
        stuck = states.get("queued", 0) + states.get("running", 0)
        wedged = stuck + probe_slots(d, tmp)
    finally:
        if d is not None and d.proc and d.proc.poll() is None:
            d.stop(60)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'minute':>6}{'requests':>10}{'req/s':>8}{'non-2xx':>9}{'sock err':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'max ms':>8}{'RSS MB':>8}{'peak MB':>8}{'WAL MB':>8}")
    for n, r in enumerate(rows, 1):
        print(f"{n:>6}{r['requests']:>10}{r['rps']:>8.0f}{r['non2xx']:>9}{r['socket_errors']:>9}{r['p50_ms']:>8.2f}"
              f"{r['p99_ms']:>8.2f}{r['max_ms']:>8.0f}{r['rss_mb']:>8.0f}{r['rss_peak_mb']:>8.0f}{r['wal_mb']:>8.0f}")
    p99 = [r["p99_ms"] for r in rows]
    rss = [r["rss_mb"] for r in rows]
    p99_slope, rss_slope = slope(p99, minute_s), slope(rss, minute_s)
    failures = sum(r["non2xx"] + r["socket_errors"] for r in rows)
    jobs_ok = not states.get("failed") and not states.get("cancelled") and not stuck
    print(f"jobs: {states}; hot swaps {work.swaps}, applies {work.applies}, bench-submitted jobs {len(work.jobs)}; "
          f"wedged slots {wedged}; control API errors {len(work.errors)}")
    for e in work.errors:
        print(f"  {e}")
    for stall in stalls:
        print(f"stall at +{stall['at_s']} s: {stall['seconds']} s ({stall['status']}); jobs running: "
              f"{', '.join(stall['jobs']) or 'none'}; bench actions: {', '.join(stall['actions']) or 'none'}")
    print(f"p99 slope {p99_slope:+.3f} ms/min, RSS slope {rss_slope:+.2f} MB/min")
    met = (failures == 0 and jobs_ok and wedged == 0 and not work.errors and rss_slope <= GOAL_RSS_MB_PER_MIN
           and p99_slope <= GOAL_P99_SLOPE * statistics.median(p99))
    print(json.dumps({"bench": "soak", "minutes": minutes, "minute_s": minute_s, "peak_rps": round(peak["rps"]),
                      "offered_rps": round(rate), "served_rps": round(statistics.fmean(r["rps"] for r in rows)), "fraction": FRACTION,
                      "requests": sum(r["requests"] for r in rows), "non2xx": sum(r["non2xx"] for r in rows),
                      "socket_errors": {k: sum(r["socket_error_kinds"][k] for r in rows)
                                        for k in ("connect", "read", "write", "timeout")},
                      "p99_ms": [round(x, 2) for x in p99], "p99_slope_ms_per_min": round(p99_slope, 3),
                      "max_ms": [round(r["max_ms"]) for r in rows],
                      "rss_mb": [round(x, 1) for x in rss], "rss_slope_mb_per_min": round(rss_slope, 2),
                      "rss_peak_mb": round(max(r["rss_peak_mb"] for r in rows), 1),
                      "wal_mb": [round(r["wal_mb"], 1) for r in rows],
                      "jobs": states, "wedged_slots": wedged, "hot_swaps": work.swaps, "applies": work.applies,
                      "control_errors": len(work.errors), "stalls": stalls,
                      "goal": f"0 non-2xx, every job finished, 0 wedged slots, RSS slope <= {GOAL_RSS_MB_PER_MIN:g} "
                              f"MB/min, p99 slope <= {GOAL_P99_SLOPE:.0%} of the median p99 per minute",
                      "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
