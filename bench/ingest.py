"""Validated ingest against DuckDB's own reader: 10M rows x 7 columns, as CSV and as Parquet.

Ours is what a user gets: a daemon with a project whose sources declare types, a unique key, ranges, allowed
values and a label; the clock runs from the ingest request to the job's success (read, check, quarantine,
profile, ledger, commit). The baseline is ``create table t as select * from read_csv(...)`` (and
``read_parquet``) into a fresh DuckDB file, committed, with the same column types. Goal: ours at >= 0.8x the
baseline's rows per second. The box is shared and noisy, so each side runs three times, alternating, into a
fresh table (ours: a source of its own per round, so the ledger does not call the file a duplicate), and the
best time of each side counts.

    python bench/ingest.py            # 10M rows
    python bench/ingest.py --quick    # 200k rows (tests/test_bench_ingest.py runs this)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.testing import DaemonProcess  # noqa: E402

SEED = 0.42
GOAL = 0.8
ROUNDS = 3
COLUMNS = {"id": "BIGINT", "ts": "TIMESTAMP", "user_id": "VARCHAR", "amount": "DOUBLE", "qty": "INTEGER",
           "country": "VARCHAR", "label": "INTEGER"}
CONTRACT = """
unique = ["id"]
label = "label"
[sources.{name}.columns]
id = {{ type = "BIGINT", not_null = true }}
ts = "TIMESTAMP"
user_id = "VARCHAR"
amount = {{ type = "DOUBLE", min = 0, max = 1000 }}
qty = {{ type = "INTEGER", min = 0, max = 10 }}
country = {{ type = "VARCHAR", allowed = ["US", "DE", "FR", "GB", "JP"] }}
label = {{ type = "INTEGER", allowed = [0, 1] }}
"""


def generate(data: Path, rows: int) -> None:
    con = duckdb.connect()
    con.execute(f"select setseed({SEED})").fetchall()
    con.execute(f"""create table t as select i as id, timestamp '2024-01-01' + to_seconds(i) as ts,
        'u' || (random() * 1000)::INT as user_id, round(random() * 1000, 2) as amount, (random() * 10)::INT as qty,
        ['US', 'DE', 'FR', 'GB', 'JP'][1 + (random() * 4.999)::INT] as country, (random() < 0.1)::INT as label
        from range({rows}) r(i)""").fetchall()
    con.execute(f"copy t to '{data / 'events.csv'}' (header)").fetchall()
    con.execute(f"copy t to '{data / 'events.parquet'}' (format parquet)").fetchall()
    con.close()


def baseline(work: Path, fmt: str) -> float:
    db = work / f"baseline-{fmt}.duckdb"
    con = duckdb.connect(str(db))
    cols = "{" + ", ".join(f"'{n}': '{t}'" for n, t in COLUMNS.items()) + "}"
    reader = (f"read_csv('{work / 'project/data/events.csv'}', header=true, columns={cols})" if fmt == "csv"
              else f"read_parquet('{work / 'project/data/events.parquet'}')")
    start = time.perf_counter()
    con.execute(f"create table t as select * from {reader}").fetchall()
    seconds = time.perf_counter() - start
    con.close()
    db.unlink()
    return seconds


def ours(d: DaemonProcess, source: str, fmt: str, rows: int) -> float:
    start = time.perf_counter()
    job = d.post(f"/sources/{source}/ingest").json()
    job = d.wait_job(job["id"], timeout=1800)
    seconds = time.perf_counter() - start
    if job["state"] != "succeeded":
        raise SystemExit(f"ingest of {fmt} failed: {job['error']}")
    batch = job["result"]["batches"][0]
    if batch["accepted"] != rows:
        raise SystemExit(f"ingest of {fmt} accepted {batch['accepted']} of {rows} rows")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 10M")
    args = parser.parse_args()
    rows = 200_000 if args.quick else 10_000_000
    rounds = 1 if args.quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        data = work / "project/data"
        data.mkdir(parents=True)
        generate(data, rows)
        toml = '[ingest]\ndata_dirs = ["data"]\n'
        for fmt in ("csv", "parquet"):
            for i in range(rounds):
                toml += f'\n[sources.events_{fmt}_{i}]\nkind = "{fmt}"\npath = "data/events.{fmt}"\n'
                toml += CONTRACT.format(name=f"events_{fmt}_{i}")
        (work / "project/appliance.toml").write_text(toml)
        results = []
        with DaemonProcess(work / "home", project=work / "project") as d:
            for fmt in ("csv", "parquet"):
                bases, mine = [], []
                for i in range(rounds):
                    bases.append(baseline(work, fmt))
                    mine.append(ours(d, f"events_{fmt}_{i}", fmt, rows))
                print(f"{fmt}: duckdb {' '.join(f'{b:.2f}' for b in bases)} s; ours "
                      f"{' '.join(f'{m:.2f}' for m in mine)} s", file=sys.stderr)
                results.append((fmt, min(bases), min(mine)))
    print(f"{'format':<8} {'rows':>11} {'duckdb s':>9} {'ours s':>8} {'duckdb rows/s':>14} {'ours rows/s':>12} "
          f"{'ratio':>6}")
    for fmt, base, mine in results:
        print(f"{fmt:<8} {rows:>11,} {base:>9.2f} {mine:>8.2f} {rows / base:>14,.0f} {rows / mine:>12,.0f} "
              f"{base / mine:>6.2f}")
    base_total = sum(b for _, b, _ in results)
    ours_total = sum(m for _, _, m in results)
    ours_rate, base_rate = 2 * rows / ours_total, 2 * rows / base_total
    ratio = ours_rate / base_rate
    print(json.dumps({"bench": "ingest", "ours": round(ours_rate), "baseline": round(base_rate),
                      "ratio": round(ratio, 3), "goal": GOAL, "met": ratio >= GOAL, "unit": "rows/s",
                      "rows": rows, "quick": args.quick}))


if __name__ == "__main__":
    main()
