"""Data drift: ours (the monitoring plugin's statistics) against Evidently 0.7 and NannyML on the same data.

Full run: a 1M-row reference and a 100k-row current window of 20 numeric columns (5 of them shifted), written
once as Parquet. Each side runs in its own process (the peers in their own virtualenvs under bench/.cache,
created here when missing) and is timed from reading the Parquet files to having every column's verdict
(ours and NannyML: best of three alternating runs; Evidently: one run); peak memory is the process's own
peak RSS (the largest seen). Evidently picks the same test as ours (normed Wasserstein for
a reference this large) and its per-column values are checked against ours; NannyML runs its univariate
Wasserstein calculator with one chunk. Goals: ours <= 2 s and <= 0.5 GB, >= 25x Evidently, >= 3.5x NannyML.
``--quick`` runs small data and skips a peer whose venv is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
PEERS = {
    "evidently": (CACHE / "evidently-venv", ["evidently==0.7.*", "pandas<3"]),
    # NannyML imports statsmodels for its plots without declaring it as a dependency.
    "nannyml": (CACHE / "nannyml-venv", ["nannyml", "pandas<3", "statsmodels"]),
}
GOAL_S, GOAL_MB, GOAL_EVIDENTLY, GOAL_NANNYML = 2.0, 512, 25.0, 3.5
SHIFTED = 5

OURS = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import pyarrow.parquet as pq
from plugins.monitoring import drift
t = time.perf_counter()
ref, cur = sys.argv[1] + "/reference.parquet", sys.argv[1] + "/current.parquet"
def column(name):  # each worker reads its own column (its own file handle), so only columns in flight are in memory
    return (pq.read_table(ref, columns=[name], use_threads=False).column(0).to_numpy(),
            pq.read_table(cur, columns=[name], use_threads=False).column(0).to_numpy(), True)
result = drift.dataset_drift({n: (lambda n=n: column(n)) for n in pq.read_schema(ref).names})
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "values": {c["column"]: c["statistic"] for c in result["columns"]},
                  "drifted": result["drifted_columns"]}))
"""

EVIDENTLY = """
import json, resource, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
t = time.perf_counter()
ref = pd.read_parquet(sys.argv[1] + "/reference.parquet")
cur = pd.read_parquet(sys.argv[1] + "/current.parquet")
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
metrics = snapshot.dict()["metrics"]
seconds = time.perf_counter() - t
values = {m["config"]["column"]: m["value"] for m in metrics if m["config"].get("type", "").endswith("ValueDrift")}
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "values": values, "methods": sorted({m["config"]["method"] for m in metrics
                                                        if "method" in m["config"]})}))
"""

NANNYML = """
import json, resource, sys, time
import pandas as pd
import nannyml as nml
t = time.perf_counter()
ref = pd.read_parquet(sys.argv[1] + "/reference.parquet")
cur = pd.read_parquet(sys.argv[1] + "/current.parquet")
calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns), continuous_methods=["wasserstein"],
                                     chunk_number=1)
calc.fit(ref)
df = calc.calculate(cur).filter(period="analysis").to_df()
seconds = time.perf_counter() - t
values = {c: float(df[(c, "wasserstein", "value")].iloc[0]) for c in ref.columns}
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "values": values}))
"""


def generate(directory: Path, ref_rows: int, cur_rows: int, cols: int, seed: int = 7) -> None:
    if (directory / "current.parquet").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"x{i:02d}" for i in range(cols)]
    ref = rng.normal(size=(ref_rows, cols))
    cur = rng.normal(size=(cur_rows, cols))
    cur[:, :SHIFTED] = cur[:, :SHIFTED] * 1.1 + 0.25  # a drift Wasserstein (normed) sees, >= 0.1
    for name, data in (("reference", ref), ("current", cur)):
        table = pa.table({n: data[:, i] for i, n in enumerate(names)})
        # One row group, uncompressed (random normals do not compress): every side reads the same file fast.
        pq.write_table(table, directory / f"{name}.parquet.tmp", row_group_size=len(data), compression="none")
        (directory / f"{name}.parquet.tmp").rename(directory / f"{name}.parquet")


def ensure_venv(peer: str, quick: bool) -> Path | None:
    venv, packages = PEERS[peer]
    python = venv / "bin" / "python"
    if python.exists():
        return python
    if quick:
        return None
    print(f"creating {venv} ({', '.join(packages)})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True,
                   env={**os.environ, "DO_NOT_TRACK": "1"})
    return python


def run_side(python: str | Path, code: str, directory: Path) -> dict:
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([str(python), "-c", code, str(directory), str(ROOT)], capture_output=True, text=True,
                         env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data; skip peers whose venv is absent")
    args = parser.parse_args()
    ref_rows, cur_rows, cols = (20_000, 2_000, 8) if args.quick else (1_000_000, 100_000, 20)
    directory = CACHE / f"drift-v2-{ref_rows}-{cur_rows}-{cols}"
    generate(directory, ref_rows, cur_rows, cols)

    # The box is shared and its load swings; ours and NannyML (seconds each) run alternately, best of three;
    # Evidently (minutes) runs once, so noise can only make it look faster relative to a slowed-down us.
    pythons = {"ours": sys.executable, **{p: ensure_venv(p, args.quick) for p in PEERS}}
    codes = {"ours": OURS, "evidently": EVIDENTLY, "nannyml": NANNYML}
    rounds = {"ours": 1 if args.quick else 3, "evidently": 1, "nannyml": 1 if args.quick else 3}
    sides: dict[str, dict] = {}
    for i in range(max(rounds.values())):
        for name in ("ours", "nannyml", "evidently"):
            if pythons[name] is None or i >= rounds[name]:
                continue
            got = run_side(pythons[name], codes[name], directory)
            best = sides.get(name)
            if best is None or got["seconds"] < best["seconds"]:
                sides[name] = {**got, "peak_mb": max(got["peak_mb"], (best or got)["peak_mb"])}
    ours = sides["ours"]

    ev = sides.get("evidently")
    max_diff = max(abs(ours["values"][c] - ev["values"][c]) for c in ours["values"]) if ev else None
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}; "
          f"reference {ref_rows:,} x current {cur_rows:,} x {cols} numeric columns ({SHIFTED} shifted)")
    print(f"{'side':<12}{'seconds':>10}{'peak MB':>10}  drifted columns")
    for name, side in sides.items():
        values = side["values"]
        drifted = sum(v >= 0.1 for v in values.values()) if name != "ours" else len(side["drifted"])
        print(f"{name:<12}{side['seconds']:>10.3f}{side['peak_mb']:>10.0f}  {drifted}")
    if ev:
        print(f"ours vs Evidently, largest difference in a column's normed Wasserstein: {max_diff:.3g} "
              f"(Evidently's methods: {', '.join(ev['methods'])})")
    ratio_ev = ev["seconds"] / ours["seconds"] if ev else None
    nm = sides.get("nannyml")
    ratio_nm = nm["seconds"] / ours["seconds"] if nm else None
    met = (ours["seconds"] <= GOAL_S and ours["peak_mb"] <= GOAL_MB
           and (ratio_ev is None or ratio_ev >= GOAL_EVIDENTLY) and (ratio_nm is None or ratio_nm >= GOAL_NANNYML)
           and (max_diff is None or max_diff <= 1e-9))
    print(json.dumps({"bench": "drift", "unit": "s", "ours": round(ours["seconds"], 3),
                      "baseline": round(ev["seconds"], 3) if ev else None,
                      "ratio": round(ratio_ev, 1) if ratio_ev else None, "goal": GOAL_EVIDENTLY, "met": met,
                      "goal_s": GOAL_S, "peak_mb": round(ours["peak_mb"]), "goal_mb": GOAL_MB,
                      "nannyml_s": round(nm["seconds"], 3) if nm else None,
                      "nannyml_ratio": round(ratio_nm, 1) if ratio_nm else None, "nannyml_goal": GOAL_NANNYML,
                      "evidently_max_abs_diff": max_diff, "quick": args.quick}))


if __name__ == "__main__":
    main()
