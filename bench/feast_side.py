"""The Feast side of bench/features.py and bench/online.py; runs in Feast's own virtualenv, never ours.

    feast-venv/bin/python bench/feast_side.py offline REPO FEATURES.parquet SPINE.parquet OUT.parquet TTL_S
    feast-venv/bin/python bench/feast_side.py online REPO FEATURES.parquet ENTITIES_JSON ITERATIONS

Prints one JSON line with its timings (and, online, the values it read for checking).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import statistics
import sys
import time
from pathlib import Path

FEATURES = ["f0", "f1", "f2", "f3", "f4"]


def store(repo: Path, features_path: str, ttl_s: int, names: list[str]):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float64, Int64

    repo.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(project="bench", provider="local", registry=str(repo / "registry.db"),
                        offline_store=DuckDBOfflineStoreConfig(),
                        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
                        entity_key_serialization_version=3, repo_path=str(repo))
    fs = FeatureStore(config=config)
    entity = Entity(name="entity", join_keys=["entity_id"])
    source = FileSource(path=features_path, timestamp_field="ts")
    view = FeatureView(name="v", entities=[entity], ttl=dt.timedelta(seconds=ttl_s), source=source,
                       schema=[Field(name=n, dtype=Int64 if n == "f2" else Float64) for n in names])
    fs.apply([entity, view])
    return fs


def offline(repo: str, features_path: str, spine_path: str, out: str, ttl_s: str) -> dict:
    import pandas as pd

    fs = store(Path(repo), features_path, int(ttl_s), FEATURES[:3])
    spine = pd.read_parquet(spine_path)
    spine["event_time"] = pd.to_datetime(spine["event_time"], utc=True)
    start = time.perf_counter()
    df = fs.get_historical_features(entity_df=spine, features=[f"v:{f}" for f in FEATURES[:3]]).to_df()
    seconds = time.perf_counter() - start
    df["event_time"] = df["event_time"].dt.tz_convert(None)
    df.to_parquet(out, index=False)
    return {"seconds": seconds, "rows": len(df), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def online(repo: str, features_path: str, entities_json: str, iterations: str) -> dict:
    fs = store(Path(repo), features_path, 10 * 365 * 86400, FEATURES)
    start = time.perf_counter()
    fs.materialize(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1))
    materialize_s = time.perf_counter() - start
    entities = json.loads(Path(entities_json).read_text())
    refs = [f"v:{f}" for f in FEATURES]
    n = int(iterations)

    def p50(batch: list[dict], rounds: int) -> float:
        times = []
        for i in range(rounds):
            rows = batch if len(batch) > 1 else [entities[i % len(entities)]]
            t = time.perf_counter_ns()
            fs.get_online_features(features=refs, entity_rows=rows).to_dict()
            times.append(time.perf_counter_ns() - t)
        return statistics.median(times) / 1000

    p50(entities[:1], 20)  # warm: the registry is read and cached on first use
    check = fs.get_online_features(features=refs, entity_rows=entities[:100]).to_dict()
    return {"materialize_s": materialize_s, "p50_1_us": p50(entities[:1], n),
            "p50_100_us": p50(entities[:100], max(20, n // 20)),
            "check": [{f: check[f][i] for f in FEATURES} for i in range(len(entities[:100]))]}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    print(json.dumps({"offline": offline, "online": online}[mode](*args)))
