"""Backups of a running box: taken while data is ingested and predictions served, verified by hash, restored
into an empty home that then answers exactly as the original did."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
from conftest import make_project
from serving_models import N_FEATURES, linear_model

from appliance.testing import DaemonProcess

TOML = """
[serving]
port = 0

[deployments.fraud]
model = "fraud@champion"

[ingest]
data_dirs = ["data"]

[sources.tx]
kind = "csv"
glob = "data/tx/*.csv"
[sources.tx.columns]
id = "BIGINT"
amount = "DOUBLE"
"""

X = np.random.default_rng(3).normal(size=(6, N_FEATURES)).astype(np.float32)
BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(X.shape), "data": X.ravel().tolist()}]}


def wait_ready(d: DaemonProcess, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.get(f"/deployments/{name}")
        if r.status_code == 200 and r.json()["state"] == "ready":
            return
        time.sleep(0.05)
    raise AssertionError(f"deployment {name} never became ready: {d.get(f'/deployments/{name}').text}")


def infer(d: DaemonProcess) -> dict:
    r = httpx.post(f"http://127.0.0.1:{d.info['ports']['serving']}/v2/models/fraud/infer", json=BODY, timeout=10)
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def store_counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        return {f"{s}.{t}": con.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0] for s, t in tables}
    finally:
        con.close()


def catalog_counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table' "
                                           "and name not like 'sqlite_%'")]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


def artifact_hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob("??/*") if p.is_file()}


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A backup taken while ingest jobs run and requests are served; the original home, stopped afterwards."""
    root = tmp_path_factory.mktemp("backup")
    project = make_project(root / "project", [], TOML)
    (project / "data" / "tx").mkdir(parents=True)
    model = linear_model(root / "fraud.onnx", seed=11)
    d = DaemonProcess(root / "home", project).start()
    try:
        d.register_model("fraud", model)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        wait_ready(d, "fraud")
        stop = threading.Event()

        def ingest_files():
            for i in itertools.count():
                path = project / "data" / "tx" / f"part-{i:03}.csv"
                path.write_text("id,amount\n" + "".join(f"{i * 1000 + j},{j * 0.5}\n" for j in range(500)))
                r = d.post("/sources/tx/ingest", {"files": [str(path)]})
                assert r.status_code == 202, r.text
                d.wait_job(r.json()["id"])
                if stop.is_set():
                    return

        def serve():
            while not stop.is_set():
                infer(d)

        workers = [threading.Thread(target=ingest_files), threading.Thread(target=serve)]
        for w in workers:
            w.start()
        while d.get("/sources/tx").json()["batches"] < 3 or not d.get("/predictions").json():
            time.sleep(0.05)
        dest = root / "snapshot"
        out = d.cli("backup", "--to", str(dest), "--json")
        assert out.returncode == 0, out.stderr
        # Both kept going after the snapshot: it was taken in the middle of the work, not at a quiet moment.
        taken = json.loads(out.stdout)["tables"]["store"]
        while d.get("/sources/tx").json()["batches"] <= taken["ingest.batches"]:
            time.sleep(0.05)
        stop.set()
        for w in workers:
            w.join(60)
        original_answer = infer(d)
        yield {"root": root, "project": project, "dest": dest, "result": json.loads(out.stdout),
               "answer": original_answer, "home": root / "home", "daemon": d}
    finally:
        if d.proc.poll() is None:
            d.stop()


def test_backup_during_ingest_and_serving_restores_every_row_and_artifact(backed_up, tmp_path):
    d, dest = backed_up["daemon"], backed_up["dest"]
    d.stop()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["tables"]["store"]["serving.predictions"] > 0
    assert manifest["tables"]["store"]["ingest.batches"] >= 3
    assert store_counts(backed_up["home"] / "store.duckdb")["serving.predictions"] > \
        manifest["tables"]["store"]["serving.predictions"]

    home = tmp_path / "restored"
    out = d.cli("restore", str(dest), "--home", str(home), "--json")
    assert out.returncode == 0, out.stderr

    assert store_counts(home / "store.duckdb") == manifest["tables"]["store"]
    assert catalog_counts(home / "catalog.db") == manifest["tables"]["catalog"]
    con = duckdb.connect(str(home / "store.duckdb"), read_only=True)
    try:
        # One consistent moment: every batch the ledger accepted is in the raw table, and no row beyond them.
        accepted = con.execute("select sum(accepted) from ingest.batches where state = 'accepted'").fetchone()[0]
        assert con.execute("select count(*) from raw.tx").fetchone()[0] == accepted > 0
        # Every restored row existed in the original, unchanged (tables only grew after the backup).
        con.execute(f"attach '{backed_up['home'] / 'store.duckdb'}' as original (read_only)")
        for table in ("raw.tx", "ingest.batches", "serving.predictions"):
            assert con.execute(f"select count(*) from (from {table} except all from original.{table})").fetchone() \
                == (0,), table
    finally:
        con.close()
    restored = artifact_hashes(home / "artifacts")
    assert restored == artifact_hashes(backed_up["home"] / "artifacts")
    assert restored and all(name == digest for name, digest in restored.items())
    assert {Path(p).name for p in manifest["files"] if p.startswith("artifacts/")} == set(restored)


def test_the_restored_deployment_gives_identical_predictions(backed_up, tmp_path):
    home = tmp_path / "restored-live"
    out = backed_up["daemon"].cli("restore", str(backed_up["dest"]), "--home", str(home))
    assert out.returncode == 0, out.stderr
    assert "restored" in out.stdout
    with DaemonProcess(home, backed_up["project"]) as restored:
        wait_ready(restored, "fraud")
        assert infer(restored) == backed_up["answer"]
        assert restored.get("/models/fraud").json()["aliases"]["champion"] == 1


def test_verify_passes_and_a_tampered_backup_fails_naming_the_file(backed_up, tmp_path):
    d, dest = backed_up["daemon"], backed_up["dest"]
    out = d.cli("backup", "verify", str(dest))
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
    tampered = tmp_path / "tampered"
    shutil.copytree(dest, tampered)
    victim = sorted((tampered / "store").glob("raw_tx*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = d.cli("backup", "verify", str(tampered))
    assert out.returncode == 1
    assert f"store/{victim.name} (recorded sha256 " in out.stderr and "Traceback" not in out.stderr
    # Without its catalog a backup cannot be put back together: nothing is restored, and it says why.
    catalog = tampered / "catalog.db"
    data = bytearray(catalog.read_bytes())
    data[len(data) // 2] ^= 0xFF
    catalog.write_bytes(bytes(data))
    out = d.cli("restore", str(tampered), "--home", str(tmp_path / "never"))
    assert out.returncode == 1 and "nothing was restored, because catalog.db failed verification" in out.stderr
    assert f"store/{victim.name}" in out.stderr
    assert not (tmp_path / "never").exists()

    # A swapped artifact with a manifest edited to match is still caught: an artifact is named by its hash.
    swapped = tmp_path / "swapped"
    shutil.copytree(dest, swapped)
    artifact = next((swapped / "artifacts").glob("??/*"))
    artifact.write_bytes(b"not the model")
    manifest = json.loads((swapped / "manifest.json").read_text())
    manifest["files"][f"artifacts/{artifact.parent.name}/{artifact.name}"]["sha256"] = \
        hashlib.sha256(b"not the model").hexdigest()
    (swapped / "manifest.json").write_text(json.dumps(manifest))
    out = d.cli("backup", "verify", str(swapped))
    assert f"artifacts/{artifact.parent.name}/{artifact.name} (recorded sha256 " in out.stderr
    assert out.returncode == 1 and "which does not match its name" in out.stderr


def test_restore_refuses_a_home_that_is_not_empty_and_a_directory_that_is_not_a_backup(backed_up, tmp_path):
    d = backed_up["daemon"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "catalog.db").write_text("mine")
    out = d.cli("restore", str(backed_up["dest"]), "--home", str(tmp_path / "busy"))
    assert out.returncode == 1 and "is not empty" in out.stderr
    assert (tmp_path / "busy" / "catalog.db").read_text() == "mine"
    out = d.cli("backup", "verify", str(tmp_path))
    assert out.returncode == 1 and "has no manifest.json" in out.stderr and "Traceback" not in out.stderr


def test_scheduled_backups_keep_the_newest_and_bad_settings_are_refused(tmp_path):
    project = make_project(tmp_path / "p", [], "[backup]\nevery_hours = 0.0003\nkeep = 2\n")
    mine = tmp_path / "home" / "backups" / "before-upgrade"
    mine.mkdir(parents=True)
    (mine / "manifest.json").write_text("{}")
    with DaemonProcess(tmp_path / "home", project) as d:
        deadline = time.monotonic() + 60
        while len(d.get("/jobs", params={"kind": "backup", "state": "succeeded"}).json()) < 3:
            assert time.monotonic() < deadline, d.get("/jobs").text
            time.sleep(0.1)
        jobs = d.get("/jobs", params={"kind": "backup"}).json()
        assert {j["origin"] for j in jobs} == {"schedule"}
        time.sleep(0.2)
        kept = sorted(p.name for p in (tmp_path / "home" / "backups").iterdir() if p != mine)
        assert len(kept) == 2 and all((tmp_path / "home" / "backups" / k / "manifest.json").is_file() for k in kept)
        assert mine.is_dir()  # only the backups the box named itself are pruned

        (project / "appliance.toml").write_text("[backup]\nevery_hours = 24\nkeep = 0\n")
        out = d.cli("apply", str(project))
        assert out.returncode == 1
        assert "appliance.toml:3: backup.keep: expected a whole number of backups >= 1, got 0" in out.stderr
        out = d.cli("backup", "--to", str(tmp_path / "p"))
        assert out.returncode == 1 and "exists and is not an empty directory" in out.stderr
        out = d.cli("backup", "--to", str(tmp_path / "home" / "artifacts" / "bk"))
        assert out.returncode == 1 and "is inside the home" in out.stderr
