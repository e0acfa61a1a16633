"""A training set's spine given as SQL: one SELECT, reading the store and files under the home and the data
directories only; stacked statements and every other file are refused before anything runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.testing import DaemonProcess

T = dt.datetime

PROJECT = """
[entities.customer]
join_keys = ["customer_id"]

[feature_views.spend]
source = "data/transactions.parquet"
entities = ["customer"]
event_time = "ts"
features = ["amount"]
"""


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spine-project")
    (root / "appliance.toml").write_text(PROJECT)
    write(root / "data/transactions.parquet", [{"customer_id": 1, "ts": T(2024, 1, 1), "amount": 5.0}])
    write(root / "data/spine.parquet", [{"customer_id": 1, "event_time": T(2024, 1, 2)}])
    write(root / "outside/spine.parquet", [{"customer_id": 1, "event_time": T(2024, 1, 2)}])
    (root / "outside/secret.csv").write_text("customer_id,event_time,secret\n1,2024-01-02,hunter2\n")
    return root


@pytest.fixture(scope="module")
def daemon(project, tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("spine-home") / "home", project=project) as d:
        job = d.wait_job(d.post("/features/spend/materialize").json()["id"])
        assert job["state"] == "succeeded", job
        yield d


def build(d: DaemonProcess, **spine):
    return d.post("/training-sets", {"name": "spined", "features": ["spend:amount"], **spine})


def refused(d: DaemonProcess, *words: str, **spine) -> None:
    jobs = len(d.get("/jobs").json())
    r = build(d, **spine)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message
    assert len(d.get("/jobs").json()) == jobs  # refused before a job was queued


def test_stacked_statements_are_refused_and_never_run(daemon, project, tmp_path):
    marker = tmp_path / "ran.csv"
    sql = (f"select * from read_parquet('{project}/data/spine.parquet')) _a; copy (select 1) to '{marker}'; "
           "select * from (select 1")
    refused(daemon, "one SELECT", spine_sql=sql)
    assert not marker.exists()
    refused(daemon, "one SELECT", spine_sql="select 1; select 2")
    refused(daemon, "one SELECT", spine_sql="drop table raw.x")


@pytest.mark.parametrize("sql, named", [
    ("select * from read_csv('{root}/outside/secret.csv')", "outside/secret.csv"),
    ("select * from '{root}/outside/secret.csv'", "outside/secret.csv"),
    ('select * from main."{root}/outside/secret.csv"', "outside/secret.csv"),
    ("select * from (summarize '{root}/outside/secret.csv')", "SUMMARIZE"),
    ("select * from read_parquet('data/../outside/spine.parquet')", "outside/spine.parquet"),
    ("select * from read_parquet(['data/spine.parquet', '{root}/outside/spine.parquet'])", "outside/spine.parquet"),
    ("select * from read_text('/etc/hostname')", "read_text"),
    ("select * from read_parquet(concat('{root}/outside/', 'spine.parquet'))", "a literal path"),
    ("select * from glob('/etc/*')", "glob"),
    ("select s.* from read_parquet('data/spine.parquet') s, (select * from read_blob('/etc/hostname'))",
     "read_blob"),
])
def test_files_outside_the_home_and_data_directories_are_refused(daemon, project, sql, named):
    refused(daemon, named, spine_sql=sql.format(root=project))


def test_a_parquet_spine_outside_the_data_directories_is_refused(daemon, project):
    refused(daemon, "outside/spine.parquet", spine="../outside/spine.parquet")
    refused(daemon, "outside/spine.parquet", spine=str(project / "outside/spine.parquet"))


def test_a_spine_query_reads_the_data_directories_and_the_store(daemon):
    for sql in ("select * from read_parquet('data/spine.parquet')",  # relative to the project, as spine is
                "with s as (select * from read_parquet('data/spine.parquet')) select customer_id, event_time "
                "from s where customer_id in (select customer_id from features.spend__v1)"):
        r = build(daemon, spine_sql=sql)
        assert r.status_code == 202, r.text
        job = daemon.wait_job(r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
