"""Backups against bad luck: a damaged live file never damages a backup, a damaged backup still gives back
everything that verifies (and names the rest), and a backup is as private as the home it came from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import make_project
from serving_models import N_FEATURES, linear_model, reference

from appliance.testing import DaemonProcess
from faults.harness import corrupt

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

X = np.random.default_rng(5).normal(size=(4, N_FEATURES)).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact(root: Path, digest: str) -> Path:
    return root / "artifacts" / digest[:2] / digest


def rows(store: Path, table: str) -> int:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        con.close()


def served_answer(d: DaemonProcess) -> np.ndarray:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{d.info['ports']['serving']}")
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    return client.infer("fraud", [inp]).as_numpy("probability")


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A daemon serving version 1 of two model versions, with an ingested table, and one backup of it."""
    root = tmp_path_factory.mktemp("backup-damage")
    project = make_project(root / "project", [], TOML)
    (project / "data" / "tx").mkdir(parents=True)
    (project / "data" / "tx" / "a.csv").write_text("id,amount\n" + "".join(f"{i},{i / 4}\n" for i in range(300)))
    models = {v: linear_model(root / f"v{v}.onnx", seed=20 + v) for v in (1, 2)}
    with DaemonProcess(root / "home", project) as d:
        digests = {}
        for v in (1, 2):
            digests[v] = d.register_model("fraud", models[v])["onnx_sha256"]
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        job = d.post("/sources/tx/ingest", {"files": [str(project / "data" / "tx" / "a.csv")]}).json()
        assert d.wait_job(job["id"])["state"] == "succeeded"
        out = d.cli("backup", "--to", str(root / "backup"), "--json")
        assert out.returncode == 0, out.stderr
        yield {"daemon": d, "root": root, "project": project, "models": models, "digests": digests,
               "backup": root / "backup", "home": root / "home"}


def test_a_live_artifact_corrupted_after_a_backup_is_intact_in_that_backup(box, tmp_path):
    d, backup, served = box["daemon"], box["backup"], box["digests"][1]
    live = artifact(box["home"], served)
    corrupt(live, 200)
    assert sha256(live) != served  # the bad disk did hit the live file

    out = d.cli("backup", "verify", str(backup))
    assert out.returncode == 0, out.stderr
    out = d.cli("restore", str(backup), "--home", str(tmp_path / "restored"))
    assert out.returncode == 0, out.stderr
    assert sha256(artifact(tmp_path / "restored", served)) == served


def test_a_backup_taken_after_an_artifact_was_damaged_leaves_it_out_names_it_and_verifies(box, tmp_path):
    d, spare = box["daemon"], box["digests"][2]
    corrupt(artifact(box["home"], spare), 100)
    out = d.cli("backup", "--to", str(tmp_path / "later"))
    assert out.returncode == 0, out.stderr
    assert f"artifact {spare} in the home does not match its hash" in out.stderr
    assert not artifact(tmp_path / "later", spare).exists()
    assert d.cli("backup", "verify", str(tmp_path / "later")).returncode == 0


def test_a_damaged_backup_names_every_bad_file_and_restores_the_rest_into_a_home_that_serves(box, tmp_path):
    d, spare = box["daemon"], box["digests"][2]
    damaged = tmp_path / "damaged"
    shutil.copytree(box["backup"], damaged)
    table_file = next((damaged / "store").glob("raw_tx*.parquet"))
    corrupt(table_file, table_file.stat().st_size // 2)
    corrupt(artifact(damaged, spare), 100)
    bad = {f"store/{table_file.name}", f"artifacts/{spare[:2]}/{spare}"}
    recorded = json.loads((damaged / "manifest.json").read_text())["files"]

    out = d.cli("backup", "verify", str(damaged), "--json")
    assert out.returncode == 1
    assert {p["path"] for p in json.loads(out.stdout)["problems"]} == bad
    out = d.cli("backup", "verify", str(damaged))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert all(path in out.stderr for path in bad)

    home = tmp_path / "restored"
    out = d.cli("restore", str(damaged), "--home", str(home))
    assert out.returncode == 4 and "Traceback" not in out.stderr  # restored in part
    for path in bad:  # each named with the hash it should have had, and why it was left out
        line = next(x for x in out.stderr.splitlines() if path in x)
        assert recorded[path]["sha256"] in line and "does not match" in line
    assert not artifact(home, spare).exists()
    assert rows(home / "store.duckdb", "raw.tx") == 0
    assert rows(home / "store.duckdb", "ingest.batches") == 1
    with DaemonProcess(home, box["project"]) as restored:
        answer = served_answer(restored)
    np.testing.assert_allclose(answer, reference(box["models"][1], X)["probability"], rtol=0, atol=1e-7)


def test_a_backup_and_a_restored_home_are_private(box, tmp_path):
    home = tmp_path / "restored"
    out = box["daemon"].cli("restore", str(box["backup"]), "--home", str(home))
    assert out.returncode == 0, out.stderr
    for root in (box["backup"], home):
        for dirpath, _dirs, files in os.walk(root):
            assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
            for name in files:
                path = Path(dirpath) / name
                assert path.stat().st_mode & 0o777 == 0o600, path


@pytest.fixture
def cow_disk(tmp_path):
    """A small XFS with reflinks (a loop-mounted sparse image), where a copy may share blocks until written."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("a copy-on-write disk needs root and mkfs.xfs (xfsprogs)")
    image, mount = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(image, "wb") as f:
        f.truncate(320 << 20)
    mount.mkdir()
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs failed here: {made.stderr.strip()}")
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a loop device was refused here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_on_a_copy_on_write_disk_artifacts_are_reflinked_and_still_independent(cow_disk, tmp_path):
    project = make_project(tmp_path / "project", [], "")
    with DaemonProcess(cow_disk / "home", project) as d:
        digest = d.register_model("fraud", linear_model(tmp_path / "m.onnx", 3))["onnx_sha256"]
        out = d.cli("backup", "--to", str(cow_disk / "backup"), "--json")
        assert out.returncode == 0, out.stderr
        corrupt(artifact(cow_disk / "home", digest), 100)
        assert sha256(artifact(cow_disk / "backup", digest)) == digest
        assert d.cli("backup", "verify", str(cow_disk / "backup")).returncode == 0
    # Independent, yet the copy took no bytes of its own until the live file was written.
    assert json.loads(out.stdout)["reflinked"] == json.loads(out.stdout)["artifacts"] == 1


def test_a_manifest_missing_its_tables_is_refused_in_words(box, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(box["backup"], edited)
    data = json.loads((edited / "manifest.json").read_text())
    del data["tables"]
    (edited / "manifest.json").write_text(json.dumps(data))
    for args in (("backup", "verify", str(edited)), ("restore", str(edited), "--home", str(tmp_path / "home"))):
        out = box["daemon"].cli(*args)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "not a manifest this appliance understands" in out.stderr
