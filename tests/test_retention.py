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
                                 "job_logs": 1, "artifacts": 2,
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
