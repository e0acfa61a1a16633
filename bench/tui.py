"""The dashboard on a long-lived box: first paint, key press to repaint, refresh cost, and memory under events.

A temporary home gets 100,000 training runs (inserted straight into its catalog before the daemon starts, as a
long-lived box would have accumulated them). Ours: ``ApplianceApp`` attached to the real daemon over HTTP, opening
on the Experiments area, which fetches one page and pages on demand. Baseline: Textual's stock ``DataTable``
given the same 100,000 rows (read from the same catalog), as a dashboard that loads the whole list would.
"First full paint" is the moment the table holds its rows and the screen has been refreshed with them.

Then the Overview is fed synthetic events as fast as the app takes them for a few seconds: events per second
absorbed, and how often it repainted (it must stay under 60 fps: it coalesces to a few repaints a second).

With 100,000 jobs and events seeded beside the runs:
- key press to repaint on each screen: ``j`` (the cursor moves a row) pressed repeatedly on every area, timed from
  the key to the end of the refresh that shows it (goal: p95 <= 50 ms);
- a screen's refresh cost: ``reload()`` of Jobs, Experiments and Overview to the end of its repaint;
- memory after an hour of events: the Overview absorbs an hour of events at 100 a second (simulated clock, as fast
  as it takes them); Python's traced memory after the first tenth and at the end (goal: flat, within 2 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402
from textual.app import App  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from appliance.testing import DaemonProcess  # noqa: E402
from tui.app import ApplianceApp  # noqa: E402
from tui.client import ApiClient  # noqa: E402

GOAL_S = 0.5
GOAL_RATIO = 10.0
GOAL_KEY_MS = 50.0
GOAL_MEMORY_MB = 2.0
AREAS = ("overview", "jobs", "data", "features", "experiments", "models", "serving", "monitoring", "plugins",
         "panels")
SIZE = (120, 36)
COLUMNS = ("id", "experiment", "spec_name", "state", "epoch", "step", "created")


def seed_runs(home: Path, n: int) -> None:
    """``n`` finished runs of one experiment, written in one transaction (the daemon is stopped)."""
    db = sqlite3.connect(home / "catalog.db")
    now = time.time()
    with db:
        db.execute("insert or ignore into training_experiments (name, created) values ('bench', ?)", [now])
        exp = db.execute("select id from training_experiments where name = 'bench'").fetchone()[0]
        db.executemany(
            "insert into training_runs (experiment_id, spec_name, state, created, started, finished, spec, params,"
            " config_hash, seed, data, epoch, step, tags) values (?, 'bench_mlp', ?, ?, ?, ?, '{}', ?, 'h', ?,"
            " '{}', ?, ?, '{}')",
            [(exp, "succeeded" if i % 7 else "failed", now - n + i, now - n + i, now - n + i + 1,
              json.dumps({"hyperparameters": {"lr": 0.001 * (1 + i % 5)}}), i, 10 + i % 40, 400 + i % 1600)
             for i in range(n)])
    db.close()


def seed_jobs_and_events(home: Path, n: int) -> None:
    """``n`` finished jobs and ``n`` events, as months of a busy box leave them (the daemon is stopped)."""
    db = sqlite3.connect(home / "catalog.db")
    now = time.time()
    kinds = ("ingest", "materialize", "monitor", "train", "backup")
    with db:
        db.executemany(
            "insert into jobs (kind, params, state, progress, attempt, created, started, finished, origin) values "
            "(?, ?, ?, 1.0, 1, ?, ?, ?, 'schedule')",
            [(kinds[i % 5], json.dumps({"n": i}), "succeeded" if i % 9 else "failed", now - n + i, now - n + i,
              now - n + i + 1) for i in range(n)])
        db.executemany("insert into events (time, type, subject, data) values (?, ?, ?, ?)",
                       [(now - n + i, ("job.succeeded", "job.progress", "monitor.finished")[i % 3], f"job:{i}",
                         json.dumps({"job_id": i})) for i in range(n)])
    db.close()


def read_runs(home: Path) -> list[tuple]:
    db = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    rows = db.execute("select r.id, e.name, r.spec_name, r.state, r.epoch, r.step, r.created from training_runs r "
                      "join training_experiments e on e.id = r.experiment_id order by r.id desc").fetchall()
    db.close()
    return rows


async def time_ours(home: Path) -> float:
    start = time.perf_counter()
    app = ApplianceApp(ApiClient(home), home=home, area="experiments")
    async with app.run_test(size=SIZE) as pilot:
        while app.first_paint is None:  # stamped by the app after the refresh that shows the rows
            await pilot.pause(0.001)
        took = app.first_paint - start
        assert len(app.screen.query_one("#runs").rows_all) > 0
    return took


class StockTable(App):
    """Textual's DataTable given every row, as the simple way to write this screen would."""

    def __init__(self, home: Path):
        super().__init__()
        self.home = home

    def compose(self):
        yield DataTable(id="runs")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        table.add_rows(read_runs(self.home))


async def time_stock(home: Path) -> tuple[float, int]:
    start = time.perf_counter()
    app = StockTable(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        took = time.perf_counter() - start
        rows = app.query_one(DataTable).row_count
    return took, rows


async def events_absorbed(home: Path, seconds: float) -> tuple[float, float]:
    """Events per second the Overview takes, and its repaints per second meanwhile."""
    app = ApplianceApp(ApiClient(home), home=home, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        screen = app.screen
        painted = screen.repaints
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(200):
                n += 1
                app.absorb({"id": n, "time": time.time(), "type": "job.progress", "subject": f"job:{n % 50}",
                            "data": {"fraction": (n % 100) / 100}})
            await asyncio.sleep(0)  # let the app run its timers and paint between bursts
        took = time.perf_counter() - start
        return n / took, (screen.repaints - painted) / took


async def repainted(app) -> None:
    """Wait for the refresh that follows what is queued now."""
    done = asyncio.Event()
    app.call_after_refresh(done.set)
    await done.wait()


async def _timed_key(app, key: str, shown) -> float:
    """Milliseconds from a key, delivered as a terminal delivers it, to the end of the refresh after ``shown()``."""
    start = time.perf_counter()
    app._driver.send_message(events.Key(key, key if len(key) == 1 else None))
    deadline = start + 5
    while not shown() and time.perf_counter() < deadline:
        await asyncio.sleep(0)
    await repainted(app)
    return 1000 * (time.perf_counter() - start)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


async def key_to_repaint(home: Path, presses: int) -> dict[str, float]:
    """p95 of key press to repaint (ms) on each area: its number key (from another area, both built) and, on a
    table of two rows or more, ``j``/``k`` (the cursor moves a row)."""
    out = {}
    app = ApplianceApp(ApiClient(home), home=home, live=False)
    async with app.run_test(size=SIZE) as pilot:
        for area in AREAS:  # each area built and filled once
            app.switch_mode(area)
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
        for key, area in zip("1234567890", AREAS, strict=True):
            took = []
            for _ in range(presses):
                other = "2" if key != "2" else "1"
                await _timed_key(app, other, lambda o=other: app.current_mode == AREAS["1234567890".index(o)])
                await pilot.pause(0.02)
                took.append(await _timed_key(app, key, lambda a=area: app.current_mode == a))
                await pilot.pause(0.02)
                table = app.screen.focused
                if getattr(table, "row_count", 0) >= 2:
                    row = table.cursor_row
                    step = "j" if row == 0 else "k"
                    took.append(await _timed_key(app, step, lambda t=table, r=row: t.cursor_row != r))
                    await pilot.pause(0.02)
            out[area] = p95(took)
    return out


async def refresh_cost(home: Path) -> dict[str, float]:
    """A screen's reload, fetch to repaint (ms), on the seeded history: the best of three."""
    out = {}
    app = ApplianceApp(ApiClient(home), home=home, live=False)
    async with app.run_test(size=SIZE) as pilot:
        for area in ("jobs", "experiments", "overview"):
            app.switch_mode(area)
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                app.screen.reload()
                await pilot.pause(0)
                await app.workers.wait_for_complete()
                await repainted(app)
                best = min(best, 1000 * (time.perf_counter() - start))
            out[area] = best
    return out


async def memory_under_events(home: Path, hours: float) -> tuple[float, float]:
    """Traced memory (MiB) after a tenth of ``hours`` of events at 100 a second, and at the end."""
    now = [time.time()]
    app = ApplianceApp(ApiClient(home), home=home, live=False, clock=lambda: now[0])
    total = int(hours * 3600 * 100)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        tracemalloc.start()
        marks = []
        for n in range(total):
            now[0] += 0.01
            app.absorb({"id": n, "time": now[0], "type": "job.progress", "subject": f"job:{n % 50}",
                        "data": {"fraction": (n % 100) / 100, "message": f"step {n}"}})
            if n % 2000 == 0:
                await asyncio.sleep(0)  # timers run and the Overview repaints as it would
            if n + 1 in (total // 10, total):
                await pilot.pause(0.05)
                marks.append(tracemalloc.get_traced_memory()[0] / 2**20)
        tracemalloc.stop()
    return marks[0], marks[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5,000 runs and one timing each (keeps the bench alive)")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7, help="timings of ours (the best is kept; the stock table "
                    "runs twice, it takes a minute a time)")
    args = ap.parse_args()
    n = 5_000 if args.quick else args.runs
    repeat = 1 if args.quick else args.repeat
    stock_repeat = 1 if args.quick else 2
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp) / "home")
        d.start()  # once, so the catalog has its tables
        d.stop()
        t = time.perf_counter()
        seed_runs(d.home, n)
        seed_jobs_and_events(d.home, n)
        seeded = time.perf_counter() - t
        d.start()
        try:
            ours = min(asyncio.run(time_ours(d.home)) for _ in range(repeat))
            stock = [asyncio.run(time_stock(d.home)) for _ in range(stock_repeat)]
            base, rows = min(s for s, _ in stock), stock[0][1]
            eps, fps = asyncio.run(events_absorbed(d.home, 0.5 if args.quick else 3.0))
            keys = asyncio.run(key_to_repaint(d.home, 5 if args.quick else 40))
            refresh = asyncio.run(refresh_cost(d.home))
            mem_early, mem_late = asyncio.run(memory_under_events(d.home, 0.02 if args.quick else 1.0))
        finally:
            d.stop()
    print(f"machine: {platform.machine()} python {platform.python_version()}; {n} runs seeded in {seeded:.2f} s")
    print(f"{'what':<52}{'value':>12}")
    print(f"{'ours: start -> first full paint (s)':<52}{ours:>12.3f}")
    print(f"{'stock DataTable, ' + str(rows) + ' rows: start -> first paint (s)':<52}{base:>12.3f}")
    print(f"{'Overview: events absorbed per second':<52}{eps:>12.0f}")
    print(f"{'Overview: repaints per second meanwhile':<52}{fps:>12.1f}")
    for area, ms in keys.items():
        print(f"{'key press to repaint, p95 (ms): ' + area:<52}{ms:>12.1f}")
    for area, ms in refresh.items():
        print(f"{'refresh with ' + str(n) + ' jobs/runs/events (ms): ' + area:<52}{ms:>12.1f}")
    print(f"{'memory under events, traced MiB: first tenth':<52}{mem_early:>12.2f}")
    print(f"{'memory under events, traced MiB: at the end':<52}{mem_late:>12.2f}")
    ratio = base / ours
    worst_key = max(keys.values())
    print(json.dumps({"bench": "tui", "unit": "s", "runs": n, "ours": round(ours, 4), "baseline": round(base, 4),
                      "ratio": round(ratio, 1), "goal": f"first paint <= {GOAL_S} s and >= {GOAL_RATIO:g}x the "
                      "stock DataTable", "met": ours <= GOAL_S and ratio >= GOAL_RATIO,
                      "events_per_s": round(eps), "repaints_per_s": round(fps, 1), "under_60_fps": fps < 60,
                      "key_p95_ms": {k: round(v, 1) for k, v in keys.items()},
                      "key_p95_met": worst_key <= GOAL_KEY_MS,
                      "refresh_ms": {k: round(v, 1) for k, v in refresh.items()},
                      "memory_mib": [round(mem_early, 2), round(mem_late, 2)],
                      "memory_flat": mem_late - mem_early <= GOAL_MEMORY_MB}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
