"""Online lookups in-process, as the serving plugin makes them: ours (the ``online_features`` service's object,
filled by materializing a view on DuckDB) against Feast 0.67's SDK with its sqlite online store, same data.

Measures the p50 of 1 entity x 5 features and of 100 entities x 5 features. Goals: 1 x 5 p50 <= 20 us,
100 x 5 p50 <= 300 us, and at least 7x faster than Feast's 1 x 5. Values are checked against Feast's for 100
entities. ``--quick`` runs small data and skips Feast if its venv is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from features import ensure_feast  # noqa: E402

from appliance.config import Config  # noqa: E402
from plugins.features import definitions, offline  # noqa: E402
from plugins.features.online import OnlineStore  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
FEATURES = ["f0", "f1", "f2", "f3", "f4"]
GOAL_1_US, GOAL_100_US, GOAL_SPEEDUP = 20.0, 300.0, 7.0


def generate(path: Path, entities: int, seed: int) -> None:
    """Two rows per entity, so the online store must keep the newer one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = entities * 2
    ts = np.datetime64("2024-01-01T00:00:00", "us") + rng.integers(0, 86400 * 10**6 * 300, n).astype(
        "timedelta64[us]")
    pq.write_table(pa.table({"entity_id": np.tile(np.arange(entities), 2), "ts": ts, "f0": rng.normal(size=n),
                             "f1": rng.random(n), "f2": rng.integers(0, 1000, n), "f3": rng.normal(size=n),
                             "f4": rng.random(n) * 100}), path)


def load_ours(path: Path) -> OnlineStore:
    """Materialize the view on DuckDB and fill the online store the way the materialize job does."""
    text = f"""
[entities.entity]
join_keys = ["entity_id"]
[feature_views.v]
source = "{path}"
entities = ["entity"]
event_time = "ts"
"""
    view = definitions.parse(Config(path=None, data=tomllib.loads(text), text=text))["v"]
    con = duckdb.connect()
    schema = offline.describe(con, view)
    offline.materialize(con, view, 1, schema)
    store = OnlineStore()
    store.load("v", 1, view.join_keys, schema.features, offline.latest_rows(con, view, 1, schema), None,
               merge=False)
    return store


def p50_us(fn, args: list, rounds: int) -> float:
    times = []
    for i in range(rounds):
        a = args[i % len(args)]
        t = time.perf_counter_ns()
        fn(*a)
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def run_feast(python: Path, data: Path, entities: list[dict], iterations: int) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rows = Path(tmp) / "entities.json"
        rows.write_text(json.dumps(entities))
        done = subprocess.run([str(python), str(ROOT / "bench" / "feast_side.py"), "online", str(Path(tmp) / "repo"),
                               str(data), str(rows), str(iterations)], capture_output=True, text=True,
                              env={**os.environ, "DO_NOT_TRACK": "1"})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data; Feast only if its venv already exists")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    entities, rounds, feast_rounds = (1_000, 2_000, 200) if args.quick else (100_000, 100_000, 2_000)
    data = CACHE / f"online-{entities}-{args.seed}.parquet"
    generate(data, entities, args.seed)
    store = load_ours(data)
    refs = [f"v:{f}" for f in FEATURES]
    rng = np.random.default_rng(args.seed)
    picks = [{"entity_id": int(e)} for e in rng.choice(entities, 1000, replace=False)]
    p50_1 = p50_us(store.get, [(keys, refs) for keys in picks], rounds)
    batches = [(picks[i:i + 100], refs) for i in range(0, 1000, 100)]
    p50_100 = p50_us(store.get_many, batches, max(200, rounds // 20))

    python = ensure_feast(install=not args.quick)
    feast = run_feast(python, data, picks, feast_rounds) if python else {"error": "venv absent (--quick)"}
    equal = None
    if "check" in feast:
        ours = [{f: row[f"v:{f}"] for f in FEATURES} for row in store.get_many(picks[:100], refs)]
        equal = all(o[f] == t[f] or abs(o[f] - t[f]) < 1e-9 for o, t in zip(ours, feast["check"], strict=True)
                    for f in FEATURES)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}; "
          f"{entities:,} entities x {len(FEATURES)} features, {rounds:,} lookups")
    print(f"{'side':<36}{'1x5 p50 us':>12}{'100x5 p50 us':>14}")
    print(f"{'ours (online_features service)':<36}{p50_1:>12.1f}{p50_100:>14.1f}")
    if "error" in feast:
        print(f"{'Feast 0.67 SDK, sqlite online store':<36}  not run: {feast['error']}")
    else:
        print(f"{'Feast 0.67 SDK, sqlite online store':<36}{feast['p50_1_us']:>12.1f}{feast['p50_100_us']:>14.1f}"
              f"   (materialize {feast['materialize_s']:.1f} s; values equal to ours: {equal})")
    speedup = feast["p50_1_us"] / p50_1 if "p50_1_us" in feast else None
    met = (p50_1 <= GOAL_1_US and p50_100 <= GOAL_100_US and speedup is not None and speedup >= GOAL_SPEEDUP
           and bool(equal))
    print(json.dumps({"bench": "online", "unit": "us", "ours": round(p50_1, 2),
                      "baseline": feast.get("p50_1_us") and round(feast["p50_1_us"], 1),
                      "ratio": speedup and round(speedup, 1), "goal": GOAL_SPEEDUP, "met": bool(met),
                      "ours_100": round(p50_100, 1), "feast_100": feast.get("p50_100_us") and round(
                          feast["p50_100_us"], 1), "goal_1_us": GOAL_1_US, "goal_100_us": GOAL_100_US,
                      "values_equal": equal}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
