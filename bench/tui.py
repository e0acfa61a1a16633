"""The dashboard with a long run history: time from start to first full paint, and events the Overview absorbs.

A temporary home gets 100,000 training runs (inserted straight into its catalog before the daemon starts, as a
long-lived box would have accumulated them). Ours: ``ApplianceApp`` attached to the real daemon over HTTP, opening
on the Experiments area, which fetches one page and pages on demand. Baseline: Textual's stock ``DataTable``
given the same 100,000 rows (read from the same catalog), as a dashboard that loads the whole list would.
"First full paint" is the moment the table holds its rows and the screen has been refreshed with them.

Then the Overview is fed synthetic events as fast as the app takes them for a few seconds: events per second
absorbed, and how often it repainted (it must stay under 60 fps: it coalesces to a few repaints a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from appliance.testing import DaemonProcess  # noqa: E402
from tui.app import ApplianceApp  # noqa: E402
from tui.client import ApiClient  # noqa: E402

GOAL_S = 0.5
GOAL_RATIO = 10.0
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
        seeded = time.perf_counter() - t
        d.start()
        try:
            ours = min(asyncio.run(time_ours(d.home)) for _ in range(repeat))
            stock = [asyncio.run(time_stock(d.home)) for _ in range(stock_repeat)]
            base, rows = min(s for s, _ in stock), stock[0][1]
            eps, fps = asyncio.run(events_absorbed(d.home, 0.5 if args.quick else 3.0))
        finally:
            d.stop()
    print(f"machine: {platform.machine()} python {platform.python_version()}; {n} runs seeded in {seeded:.2f} s")
    print(f"{'what':<52}{'value':>12}")
    print(f"{'ours: start -> first full paint (s)':<52}{ours:>12.3f}")
    print(f"{'stock DataTable, ' + str(rows) + ' rows: start -> first paint (s)':<52}{base:>12.3f}")
    print(f"{'Overview: events absorbed per second':<52}{eps:>12.0f}")
    print(f"{'Overview: repaints per second meanwhile':<52}{fps:>12.1f}")
    ratio = base / ours
    print(json.dumps({"bench": "tui", "unit": "s", "runs": n, "ours": round(ours, 4), "baseline": round(base, 4),
                      "ratio": round(ratio, 1), "goal": f"first paint <= {GOAL_S} s and >= {GOAL_RATIO:g}x the "
                      "stock DataTable", "met": ours <= GOAL_S and ratio >= GOAL_RATIO,
                      "events_per_s": round(eps), "repaints_per_s": round(fps, 1), "under_60_fps": fps < 60}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
