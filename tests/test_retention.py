"""Retention removes what is past its age and nothing else: rows and files of controlled ages, a real daemon."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_project

from appliance.artifacts import ArtifactStore
from appliance.testing import DaemonProcess

DAY = 86_400
TOML = """
[retention]
predictions_days = 10
events_days = 20
job_logs_days = 5
orphan_artifacts_days = 3
"""
PREDICTIONS = """
create schema if not exists serving;
create table if not exists serving.predictions (
    deployment varchar, model varchar, version integer, request_id varchar, row_index integer,
    ts timestamp, latency_us integer, shadow boolean, inputs json, outputs json);
create table if not exists serving.feedback (request_id varchar, row_index integer, label double, ts timestamp);
"""


def ago(days: float) -> float:
    return time.time() - days * DAY


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)


def put_artifact(home: Path, content: bytes, age_days: float) -> str:
    digest = ArtifactStore(home / "artifacts").put_bytes(content)
    path = home / "artifacts" / digest[:2] / digest
    os.utime(path, (ago(age_days), ago(age_days)))
    return digest


def age_the_home(home: Path) -> dict:
    """Rows and files just past and just within each age, written while no daemon runs."""
    con = duckdb.connect(str(home / "store.duckdb"))
    con.execute(PREDICTIONS)
    for rid, age in (("old", 11), ("young", 9)):
        con.execute("insert into serving.predictions (deployment, model, version, request_id, row_index, ts, "
                    "latency_us, shadow, inputs, outputs) values ('fraud', 'fraud', 1, ?, 0, ?, 5, false, '{}', '{}')",
                    [rid, utc(ago(age))])
        con.execute("insert into serving.feedback values (?, 0, 1.0, ?)", [rid, utc(ago(age))])
    con.execute("create schema if not exists raw; create table raw.ancient as select 1 as x, "
                "timestamp '2001-01-01' as ts")
    con.close()
    db = sqlite3.connect(home / "catalog.db", isolation_level=None)
    ids = {}
    for name, age in (("old", 21), ("young", 19)):
        ids[name] = db.execute("insert into events (time, type, subject, data) values (?, 'test.aged', ?, '{}')",
                               [ago(age), name]).lastrowid
    db.execute("insert into job_logs (job_id, seq, time, line) values (999, 1, ?, 'old line'), "
               "(999, 2, ?, 'young line')", [ago(6), ago(4)])
    artifacts = {
        "orphan": put_artifact(home, b"an unreferenced old checkpoint", 4),
        "young_orphan": put_artifact(home, b"an unreferenced new checkpoint", 2),
        "referenced": put_artifact(home, b"a model version's onnx", 400),
        "third_party": put_artifact(home, b"something another plugin keeps", 400),
    }
    db.execute("insert into training_experiments (id, name, created) values (1, 'kept', 0)")
    db.execute("insert into training_runs (id, experiment_id, spec_name, state, created, finished, spec, params, "
               "config_hash, seed, data) values (1, 1, 'kept', 'succeeded', ?, ?, '{}', '{}', 'x', 1, '{}')",
               [ago(401), ago(400)])
    db.execute("insert into training_artifacts (run_id, kind, sha256, epoch, step, size, created) "
               "values (1, 'model', ?, 1, 1, 10, ?)", [artifacts["referenced"], ago(400)])
    # A table retention has never heard of, holding the hash inside JSON: still a reference.
    db.execute("create table thirdparty_notes (note text)")
    db.execute("insert into thirdparty_notes values (?)", [json.dumps({"file": {"sha": artifacts["third_party"]}})])
    db.close()
    tmp = home / "artifacts" / ".tmp-abandoned"
    tmp.write_bytes(b"half a write")
    os.utime(tmp, (ago(4), ago(4)))
    return {"events": ids, "artifacts": artifacts}


def test_retention_removes_what_is_past_its_age_and_nothing_else(tmp_path):
    project = make_project(tmp_path / "p", [], TOML)
    home = tmp_path / "home"
    DaemonProcess(home, project).start().stop()  # migrate a home, then age it with the daemon down
    aged = age_the_home(home)
    before_events = {r[0] for r in sqlite3.connect(home / "catalog.db").execute("select id from events")}

    with DaemonProcess(home, project) as d:
        job = d.wait_job(d.submit("retention")["id"])
        assert job["state"] == "succeeded", job
        assert job["result"] == {"predictions": {"serving.predictions": 1, "serving.feedback": 1}, "events": 1,
                                 "job_logs": 1, "jobs": 0, "checkpoints": 0, "deleted_run_rows": 0,
                                 "monitor_runs": 0, "feature_index_files": 0, "feature_index_bytes": 0,
                                 "artifacts": 2,
                                 "artifact_bytes": len(b"an unreferenced old checkpoint") + len(b"half a write")}
        usage = json.loads(d.cli("disk", "--json").stdout)

    con = duckdb.connect(str(home / "store.duckdb"), read_only=True)
    assert con.execute("select request_id from serving.predictions").fetchall() == [("young",)]
    assert con.execute("select request_id from serving.feedback").fetchall() == [("young",)]
    assert con.execute("select count(*) from raw.ancient").fetchone() == (1,)
    con.close()
    db = sqlite3.connect(home / "catalog.db")
    after_events = {r[0] for r in db.execute("select id from events")}
    assert after_events >= before_events - {aged["events"]["old"]}
    assert aged["events"]["old"] not in after_events and aged["events"]["young"] in after_events
    assert [r[0] for r in db.execute("select line from job_logs where job_id = 999")] == ["young line"]
    db.close()
    left = {p.name for p in (home / "artifacts").glob("??/*")}
    a = aged["artifacts"]
    assert left == {a["young_orphan"], a["referenced"], a["third_party"]}
    assert not (home / "artifacts" / ".tmp-abandoned").exists()
    for name in left:
        assert hashlib.sha256((home / "artifacts" / name[:2] / name).read_bytes()).hexdigest() == name

    assert set(usage["areas"]) == {"catalog", "store", "artifacts", "logs", "backups"}
    assert usage["artifacts"] == 3
    assert usage["areas"]["artifacts"] == sum(p.stat().st_size for p in (home / "artifacts").rglob("*")
                                               if p.is_file())
    assert {"table": "raw.ancient", "rows": 1, "columns": 2} in usage["tables"]
    # Counted after the prune, not from the store's metadata (which still said 2).
    assert {"table": "serving.predictions", "rows": 1} == {
        k: v for t in usage["tables"] if t["table"] == "serving.predictions" for k, v in t.items() if k != "columns"}


def test_putting_an_artifact_again_restarts_its_age(tmp_path):
    store = ArtifactStore(tmp_path)
    digest = store.put_bytes(b"same bytes")
    os.utime(store.path_for(digest), (ago(30), ago(30)))
    assert store.put_bytes(b"same bytes") == digest
    assert store.path_for(digest).stat().st_mtime > ago(1)


def test_bad_retention_settings_name_the_key(tmp_path):
    project = make_project(tmp_path / "p", [], "[retention]\nevents_days = -1\n")
    with pytest.raises(RuntimeError) as err:
        DaemonProcess(tmp_path / "home", project).start(timeout=20)
    assert "appliance.toml:2: retention.events_days: expected a number of days > 0, got -1" in str(err.value)
    project = make_project(tmp_path / "p2", [], '[retention]\ncheckpoints_keep = ["first"]\n')
    with pytest.raises(RuntimeError) as err:
        DaemonProcess(tmp_path / "home2", project).start(timeout=20)
    assert ("appliance.toml:2: retention.checkpoints_keep: expected a list of 'best' and 'last' (or [] to keep "
            "none), got ['first']") in str(err.value)


# ------------------------------------------------------------------------------------------------ everything else

EVERYTHING = """
[retention]
jobs_days = 10
checkpoints_days = 5
checkpoints_keep = ["last"]
monitor_runs_days = 3
feature_indexes_days = 2
orphan_artifacts_days = 3

[entities.card]
join_keys = ["card_id"]

[feature_views.spend]
source = "data/spend.parquet"
entities = ["card"]
event_time = "ts"
features = ["amount"]
"""


def add_run(db, home: Path, finished_days: float, epochs: int = 4, best: int = 2, metrics: int = 0) -> dict:
    """A finished run with a checkpoint per epoch (files as old as the run) and val_loss lowest at ``best``."""
    db.execute("insert or ignore into training_experiments (name, created) values ('aged', 0)")
    exp = db.execute("select id from training_experiments where name = 'aged'").fetchone()[0]
    run = db.execute("insert into training_runs (experiment_id, spec_name, state, created, finished, spec, params, "
                     "config_hash, seed, data) values (?, 'aged', 'succeeded', ?, ?, '{}', ?, 'x', 1, '{}')",
                     [exp, ago(finished_days + 1), ago(finished_days),
                      json.dumps({"hyperparameters": {"early_stopping_metric": "val_loss"}})]).lastrowid
    files = {}
    for epoch in range(1, epochs + 1):
        files[epoch] = put_artifact(home, f"run {run} epoch {epoch}".encode(), finished_days)
        db.execute("insert into training_artifacts (run_id, kind, sha256, epoch, step, size, created) values "
                   "(?, 'checkpoint', ?, ?, ?, 10, ?)", [run, files[epoch], epoch, epoch * 10, ago(finished_days)])
        db.execute("insert into training_metrics (run_id, key, step, epoch, value, time) values "
                   "(?, 'val_loss', ?, ?, ?, ?)", [run, epoch * 10, epoch, abs(epoch - best) + 0.5, ago(1)])
    for step in range(metrics):
        db.execute("insert into training_metrics (run_id, key, step, value, time) values (?, 'train_loss', ?, 1, ?)",
                   [run, step, ago(1)])
    return {"id": run, "files": files}


def test_retention_prunes_every_kind_past_its_age_and_keeps_what_a_registered_version_needs(tmp_path):
    project = make_project(tmp_path / "p", [], EVERYTHING)
    (project / "data").mkdir()
    pq.write_table(pa.table({"card_id": [1, 2], "ts": [dt.datetime(2024, 1, 1)] * 2, "amount": [1.0, 2.0]}),
                   project / "data" / "spend.parquet")
    home = tmp_path / "home"
    with DaemonProcess(home, project) as d:
        assert d.wait_job(d.post("/features/spend/materialize").json()["id"])["state"] == "succeeded"
    index = home / "features" / "index"
    live = {p.name for p in index.iterdir()}
    assert "spend__v1.json" in live
    for name in live:  # the current version's index is old, and still read: it stays
        os.utime(index / name, (ago(30), ago(30)))

    db = sqlite3.connect(home / "catalog.db", isolation_level=None)
    plain, registered, young = (add_run(db, home, 6), add_run(db, home, 6), add_run(db, home, 1))
    deleted = add_run(db, home, 6, epochs=1, metrics=5)
    reference = put_artifact(home, b"a registered version's reference sample", 400)
    onnx = put_artifact(home, b"a registered version's onnx", 400)
    db.execute("insert into registry_models (name, created) values ('fraud', 0)")
    db.execute("insert into registry_versions (name, version, run_id, onnx_sha256, signature, metrics, lineage, "
               "created) values ('fraud', 1, ?, ?, '{}', '{}', ?, 0)",
               [registered["id"], onnx, json.dumps({"run_id": registered["id"], "reference_sha256": reference})])
    # An epoch's event names a checkpoint: news, which keeps no artifact.
    db.execute("insert into events (time, type, subject, data) values (?, 'run.epoch', 'run', ?)",
               [ago(0.1), json.dumps({"checkpoint": plain["files"][1]})])
    for monitor, age in (("m1", 10), ("m1", 5), ("m1", 1), ("m2", 20)):
        db.execute("insert into monitor_runs (monitor, kind, time, status, \"values\", checks, details) values "
                   "(?, 'box', ?, 'ok', '[]', '[]', '{}')", [monitor, ago(age)])
    jobs = {}
    for name, age in (("old", 11), ("young", 9)):
        jobs[name] = db.execute("insert into jobs (kind, state, created, finished) values ('sleep', 'succeeded', ?, ?)",
                                [ago(age), ago(age)]).lastrowid
        db.execute("insert into job_logs (job_id, seq, time, line) values (?, 1, ?, 'a line')", [jobs[name], ago(0.1)])
    db.close()

    with DaemonProcess(home, project) as d:
        out = d.cli("runs", "delete", str(deleted["id"]))
        assert out.returncode == 0 and "its metrics go at the next prune" in out.stdout, out.stderr
        out = d.cli("runs", "delete", str(registered["id"]))
        assert out.returncode != 0 and "fraud version 1: a registered version's lineage needs it" in out.stderr
        # Left by an interrupted save, or by a training set that read an older version: old ones go.
        leftovers = {"spend__v1.0123456789ab.rows.arrow": 3, "spend__v7.json": 3, "spend__v7.aaaa.rows.arrow": 3,
                     ".0123456789ab.json": 3, "spend__v7.bbbb.keys.arrow": 1}
        for name, age in leftovers.items():
            (index / name).write_bytes(b"x" * 100)
            os.utime(index / name, (ago(age), ago(age)))
        job = d.wait_job(d.submit("retention")["id"])
        assert job["state"] == "succeeded", job
        result = job["result"]
        runs_left = {r["id"] for r in d.get("/runs", params={"limit": 100}).json()}

    assert result["checkpoints"] == 3 + 2  # the plain run keeps its last; the registered one its best and last
    assert result["deleted_run_rows"] == 1 + 1 + 5  # the deleted run's checkpoint row, val_loss and train_loss
    assert result["monitor_runs"] == 2 and result["jobs"] == 1
    assert (result["feature_index_files"], result["feature_index_bytes"]) == (4, 400)
    db = sqlite3.connect(home / "catalog.db")
    kept = {(r, e) for r, e in db.execute("select run_id, epoch from training_artifacts where kind = 'checkpoint'")}
    assert kept == {(plain["id"], 4), (registered["id"], 2), (registered["id"], 4),
                    *((young["id"], e) for e in range(1, 5))}
    assert deleted["id"] not in runs_left and registered["id"] in runs_left
    assert db.execute("select count(*) from training_metrics where run_id = ?", [deleted["id"]]).fetchone() == (0,)
    assert sorted(db.execute("select monitor, round((? - time) / 86400) from monitor_runs", [time.time()])) == [
        ("m1", 1.0), ("m2", 20.0)]
    assert {r[0] for r in db.execute("select id from jobs where id in (?, ?)", list(jobs.values()))} == {jobs["young"]}
    assert db.execute("select count(*) from job_logs where job_id = ?", [jobs["old"]]).fetchone() == (0,)
    db.close()
    artifacts = {p.name for p in (home / "artifacts").glob("??/*")}
    gone = {plain["files"][e] for e in (1, 2, 3)} | {registered["files"][e] for e in (1, 3)} | \
        {deleted["files"][1]}
    assert not gone & artifacts
    assert {plain["files"][4], registered["files"][2], registered["files"][4], reference, onnx,
            *young["files"].values()} <= artifacts
    assert result["artifacts"] == len(gone)
    left = {p.name for p in index.iterdir()}
    assert left == live | {"spend__v7.bbbb.keys.arrow"}


def test_a_schedule_whose_last_job_was_pruned_keeps_firing(tmp_path):
    """Pruned jobs are gone from every view of them: a job schedule whose previous fire's job was pruned still
    fires, and a pipeline run whose step jobs were pruned still reads."""
    markers = tmp_path / "markers"
    toml = (f'[fixture]\nmarkers = "{markers}"\n\n[retention]\nevery_hours = 0\njobs_days = 0.00001\n\n'
            '[schedules.tick]\nkind = "sleep"\nparams = { seconds = 0 }\ninterval_s = 3\n\n'
            '[pipelines.once]\n[[pipelines.once.steps]]\nname = "nap"\nkind = "sleep"\nparams = { seconds = 0 }\n')
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], toml)
    with DaemonProcess(tmp_path / "home", project) as d:
        run = d.post("/pipelines/once/run").json()
        run_id = run.get("id") or run.get("run", {}).get("id")
        deadline = time.monotonic() + 20
        while d.get(f"/pipelines/once/runs/{run_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        fired = [j for j in d.get("/jobs", params={"kind": "sleep"}).json() if j["origin"] == "schedule:tick"]
        while not fired or fired[0]["state"] != "succeeded":  # the schedule's first fire, done
            assert time.monotonic() < deadline
            time.sleep(0.1)
            fired = [j for j in d.get("/jobs", params={"kind": "sleep"}).json() if j["origin"] == "schedule:tick"]
        time.sleep(1.0)  # past jobs_days, and before the next fire
        assert d.wait_job(d.submit("retention")["id"])["result"]["jobs"] >= 2
        pruned = d.get("/jobs", params={"limit": 1000}).json()
        newest = max(j["id"] for j in pruned)
        while not [j for j in d.get("/jobs", params={"kind": "sleep"}).json() if j["id"] > newest]:
            assert time.monotonic() < deadline, d.stderr()[-3000:]
            time.sleep(0.1)
        detail = d.get(f"/pipelines/once/runs/{run_id}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["steps"][0]["job_state"] is None
