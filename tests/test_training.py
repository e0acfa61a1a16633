"""Training, tracking and the registry against a real daemon: run -> checkpoints -> ONNX -> registry -> Triton.

One daemon serves the module; the data sets are small and synthetic so each run takes seconds on a CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient
from conftest import make_project
from google.protobuf import text_format

from appliance.testing import DaemonProcess

PROJECT = """
[daemon]
drain_seconds = 2

[plugins]
deny = ["features"]  # the fixture plays the feature store's training_sets service

[training.fraud]
training_set = "transactions"
label = "is_fraud"
features = ["amount", "age", "merchant", "channel"]
task = "binary"
alias = "staging"
seed = 7
description = "fraud detector"
tags = {team = "risk"}

[training.fraud.hyperparameters]
epochs = 6
batch_size = 64
layers = [16]
lr = 0.01
class_weight = "balanced"

[training.slow]
parquet = "data/transactions.parquet"
label = "is_fraud"
model = false
export = false
seed = 1

[training.slow.hyperparameters]
epochs = 12
batch_size = 32
layers = [16]
patience = 12

[training.segments]
parquet = "data/transactions.parquet"
label = "segment"
features = ["amount", "age", "merchant"]
task = "multiclass"
model = false
export = false
seed = 3

[training.segments.hyperparameters]
epochs = 3
class_weight = "balanced"

[training.segments.sweep]
method = "grid"
metric = "val_loss"

[training.segments.sweep.parameters]
lr = [0.03, 0.00001]

[training.price]
parquet = "data/transactions.parquet"
label = "price"
features = ["amount", "age", "channel"]
task = "regression"
trainer = "linear"
split = {method = "time", column = "ts"}

[training.price.hyperparameters]
epochs = 60
lr = 0.3

[registry.models.fraud.gate]
metric = "auc"
aliases = ["production"]
"""


def make_data(path: Path, n: int = 3000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    age = rng.integers(18, 80, n)
    merchant = rng.choice(["grocer", "casino", "fuel", "books", "travel"], n)
    channel = rng.choice(["web", "pos", "app"], n)
    logit = 1.5 * (np.log(amount) - 3) - 0.05 * (age - 50) + np.where(merchant == "casino", 2.5, -0.5) \
        + np.where(channel == "web", 1.0, -0.5) - 1.0
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    segment = np.where(age < 35, "young", np.where(age < 60, "middle", "senior"))
    price = 2.0 * np.log(amount) + 0.1 * age + np.where(channel == "web", 3.0, 0.0) + rng.normal(0, 0.1, n)
    amount[rng.random(n) < 0.02] = np.nan  # missing values reach the graph as NaN
    pq.write_table(pa.table({"amount": amount, "age": age, "merchant": merchant, "channel": channel,
                             "is_fraud": is_fraud, "segment": segment, "price": price,
                             "ts": np.arange(n, dtype=np.int64)}), path)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    project = make_project(root / "project", ["good/fixture_training_sets", "good/fixture_trainer"], PROJECT)
    (project / "data").mkdir(exist_ok=True)
    make_data(project / "data" / "transactions.parquet")
    with DaemonProcess(root / "home", project) as d:
        d.root = root
        d.project = project
        yield d


def start(d, spec: str, **overrides) -> int:
    r = d.post("/runs", {"spec": spec, "set": overrides})
    assert r.status_code == 202, r.text
    return r.json()["run_id"]


def wait_run(d, run_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = d.get(f"/runs/{run_id}").json()
        if run["state"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def run_events(d, run_id: int) -> list[dict]:
    return [e for e in d.events(type="run.*") if e["data"].get("run_id") == run_id]


def series(d, run_id: int) -> list[tuple]:
    rows = d.get(f"/runs/{run_id}/metrics", params={"limit": 100_000}).json()
    return [(m["key"], m["step"], m["epoch"], m["value"]) for m in rows if not m["key"].startswith("system/")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_config_pb2():
    """Triton's ModelConfig proto, from tritonclient (its grpc package needs grpcio, so load the module alone)."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def fraud_run(daemon):
    run_id = start(daemon, "fraud")
    run = wait_run(daemon, run_id)
    assert run["state"] == "succeeded", (run, daemon.get(f"/jobs/{run['job_id']}/logs").json()[-20:])
    return run


def test_run_end_to_end_checkpoints_metrics_environment(daemon, fraud_run):
    run = daemon.get(f"/runs/{fraud_run['id']}").json()
    checkpoints = [a for a in run["artifacts"] if a["kind"] == "checkpoint"]
    assert [c["epoch"] for c in checkpoints] == list(range(1, run["epoch"] + 1))
    for c in checkpoints:  # every checkpoint is in the artifact store under its own hash
        assert sha256(daemon.home / "artifacts" / c["sha256"][:2] / c["sha256"]) == c["sha256"]
    keys = {k for k in run["metrics"]}
    assert {"train_loss", "val_loss", "val_auc", "val_accuracy", "system/cpu_percent",
            "system/process_rss_mb"} <= keys
    steps = [m for m in series(daemon, run["id"]) if m[0] == "train_loss"]
    assert len(steps) > run["epoch"]  # per-step, not only per-epoch
    env = run["env"]
    assert env["python"] and env["packages"]["torch"] and env["packages"]["onnxruntime"]
    assert "cuda" in env and "gpu" in env and "driver" in env and "git" in env
    assert run["seed"] == 7 and len(run["config_hash"]) == 64
    assert run["tags"] == {"team": "risk"}
    types = [e["type"] for e in run_events(daemon, run["id"])]
    assert types[0] == "run.started" and types[-1] == "run.finished"
    assert types.count("run.epoch") == run["epoch"]


def test_onnx_parity_signature_and_raw_inputs(daemon, fraud_run):
    model = fraud_run["result"]["model"]
    assert model["parity_max_abs_diff"] <= 1e-4 and model["parity_rows"] > 100
    resolved = daemon.get("/models/fraud/resolve/1").json()
    path = Path(resolved["onnx_path"])
    assert sha256(path) == resolved["onnx_sha256"] == model["onnx_sha256"]
    graph = onnx.load(path)
    onnx.checker.check_model(graph, full_check=True)
    sig = resolved["signature"]
    assert [i.name for i in graph.graph.input] == [i["name"] for i in sig["inputs"]] == ["numeric", "categorical"]
    assert sig["feature_names"] == ["amount", "age", "merchant", "channel"]
    assert sig["class_labels"] == [0, 1] and sig["outputs"][0]["name"] == "probabilities"
    session = ort.InferenceSession(str(path))
    for batch in (1, 7):  # a dynamic batch dimension, raw values in (NaN and an unseen category too)
        numeric = np.array([[50.0, 30]] * batch, np.float32)
        numeric[0, 0] = np.nan
        categorical = np.array([["casino", "web"]] * (batch - 1) + [["never-seen", ""]], dtype=object)
        probs = session.run(None, {"numeric": numeric, "categorical": categorical})[0]
        assert probs.shape == (batch, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    risky = session.run(None, {"numeric": np.array([[400.0, 20]], np.float32),
                               "categorical": np.array([["casino", "web"]], dtype=object)})[0][0, 1]
    safe = session.run(None, {"numeric": np.array([[5.0, 75]], np.float32),
                              "categorical": np.array([["books", "pos"]], dtype=object)})[0][0, 1]
    assert risky > 0.5 > safe


def test_registration_lineage_alias_and_audit(daemon, fraud_run):
    assert fraud_run["result"]["registered"] == {"name": "fraud", "version": 1, "alias": "staging"}
    version = daemon.get("/models/fraud/versions/1").json()
    lineage = version["lineage"]
    assert lineage["run_id"] == fraud_run["id"] and lineage["training_set"] == "ts-transactions"
    assert lineage["manifest"]["views"] == {"transactions": 3, "merchants": 1}
    assert lineage["manifest"]["hash"] == sha256(daemon.project / "data" / "transactions.parquet")
    assert version["metrics"]["auc"] > 0.7 and version["holdout_sha256"]
    assert version["description"] == "fraud detector" and version["tags"] == {"team": "risk"}

    out = daemon.cli("models", "promote", "fraud", "1", "production", "--reason", "first release", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["to_version"] == 1
    assert daemon.get("/models/fraud/resolve/production").json()["version"] == 1
    assert daemon.get("/models/fraud/resolve/latest").json()["version"] == 1
    moved = [e["data"] for e in daemon.events(type="model.alias_moved")]
    assert {"name": "fraud", "alias": "production", "from_version": None, "to_version": 1,
            "reason": "first release"} in moved
    audit = daemon.get("/models/fraud/audit").json()
    assert [(a["action"], a["alias"], a["to_version"]) for a in audit][:3] == [
        ("promote", "production", 1), ("promote", "staging", 1), ("register", None, 1)]
    assert audit[0]["reason"] == "first release" and audit[0]["time"] > 0
    assert [e["data"]["version"] for e in daemon.events(type="model.registered")] == [1]
    assert daemon.post("/models/fraud/aliases/latest", {"version": 1}).status_code == 400  # reserved


def test_a_spec_promotes_only_a_better_version_and_force_or_gate_none_override(daemon, fraud_run):
    # The spec's alias (staging) took version 1, the first; production holds it too (its own configured gate).
    assert daemon.post("/models/fraud/aliases/production", {"version": 1}).status_code == 200
    out = daemon.cli("train", "fraud", "--set", "lr=1e-6", "--set", "epochs=1", "--wait", timeout=180)
    assert out.returncode == 0, out.stderr
    assert "registered fraud version 2; not promoted: promotion gate (spec fraud)" in out.stdout, out.stdout
    worse = daemon.get(f"/runs/{int(out.stdout.split()[1])}").json()
    reg, champion = worse["result"]["registered"], worse["result"]["champion"]
    assert reg["version"] == 2 and "alias" not in reg
    assert champion["version"] == 1  # the holder, scored on this run's holdout
    v1, v2 = (daemon.get(f"/models/fraud/versions/{v}").json() for v in (1, 2))
    assert v1["holdout_sha256"] == v2["holdout_sha256"]  # the same rows, so the gates may compare them
    assert v2["metrics"]["auc"] < champion["metrics"]["auc"]
    assert daemon.get("/models/fraud/resolve/staging").json()["version"] == 1
    refused = daemon.get("/models/fraud/audit").json()[0]
    assert (refused["action"], refused["alias"], refused["from_version"], refused["to_version"]) == (
        "refused", "staging", 1, 2)
    assert f"auc {v2['metrics']['auc']:.6g}" in refused["reason"]
    assert f"has {champion['metrics']['auc']:.6g}" in refused["reason"]
    r = daemon.post("/models/fraud/aliases/production", {"version": 2, "reason": "try it"})
    assert r.status_code == 409 and "promotion gate" in r.json()["error"]["message"]
    assert daemon.get("/models/fraud/resolve/production").json()["version"] == 1
    assert daemon.get("/models/fraud/audit").json()[0]["action"] == "refused"

    out = daemon.cli("models", "promote", "fraud", "2", "staging", "--force", "--reason", "see it live")
    assert out.returncode == 0 and "staging: 1 -> 2" in out.stdout, out.stderr
    assert daemon.get("/models/fraud/audit").json()[0]["action"] == "force"
    out = daemon.cli("models", "rollback", "fraud", "staging", "--reason", "v2 is worse", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["to_version"] == 1
    assert daemon.get("/models/fraud/audit").json()[0]["action"] == "rollback"

    # gate = "none": the spec's alias follows every run again.
    run = wait_run(daemon, start(daemon, "fraud", lr=1e-6, epochs=1, gate="none"))
    assert run["result"]["registered"] == {"name": "fraud", "version": 3, "alias": "staging"}
    assert "champion" not in run["result"]


def test_descriptions_tags_and_an_append_only_audit_log(daemon, fraud_run):
    r = daemon.post("/models/fraud", {"description": "catches card fraud", "tags": {"owner": "risk"}})
    assert r.status_code == 200 and (r.json()["description"], r.json()["tags"]) == ("catches card fraud",
                                                                                  {"owner": "risk"})
    r = daemon.post("/models/fraud/versions/1", {"tags": {"reviewed": "yes"}})
    assert r.json()["tags"] == {"team": "risk", "reviewed": "yes"}
    con = sqlite3.connect(daemon.home / "catalog.db", timeout=30)
    try:
        for sql in ("delete from registry_audit", "update registry_audit set reason = 'rewritten'"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
    finally:
        con.close()


def test_random_sweep_draws_the_same_trials_within_their_ranges():
    from plugins.training import spec as spec_mod
    from plugins.training.mlp import MLP_TRAINER

    class Trainers:
        get = {"mlp": MLP_TRAINER}.get

        def names(self):
            return ["mlp"]

    raw = {"training_set": "t", "label": "y", "sweep": {"method": "random", "trials": 6, "parameters": {
        "lr": {"min": 1e-4, "max": 1e-1, "log": True}, "epochs": {"min": 2, "max": 4}, "layers": [[8], [16, 8]]}}}
    sweep = spec_mod.resolve("s", raw, Trainers(), None)["sweep"]
    trials = spec_mod.trials(sweep)
    assert trials == spec_mod.trials(sweep) and len(trials) == 6
    assert all(1e-4 <= t["lr"] <= 1e-1 and t["epochs"] in (2, 3, 4) and t["layers"] in ([8], [16, 8])
               for t in trials)
    assert sweep["goal"] == "min"  # val_loss: lower is better


def test_triton_export_parses_as_model_config(daemon, fraud_run, tmp_path):
    out = daemon.cli("models", "export", "fraud@production", "--triton", str(tmp_path / "repo"), "--json")
    assert out.returncode == 0, out.stderr
    config = text_format.Parse((tmp_path / "repo" / "fraud" / "config.pbtxt").read_text(),
                               model_config_pb2().ModelConfig())
    graph = onnx.load(tmp_path / "repo" / "fraud" / "1" / "model.onnx")
    assert config.name == "fraud" and config.platform == "onnxruntime_onnx"
    assert [i.name for i in config.input] == [i.name for i in graph.graph.input]
    assert [o.name for o in config.output] == [o.name for o in graph.graph.output] == ["probabilities"]
    pb2 = model_config_pb2()
    assert [i.data_type for i in config.input] == [pb2.TYPE_FP32, pb2.TYPE_STRING]
    assert [list(i.dims) for i in config.input] == [[2], [2]] and list(config.output[0].dims) == [2]
    assert (tmp_path / "repo" / "fraud" / "labels.txt").read_text() == "0\n1\n"


# ------------------------------------------------------------------------------------------------ crashes


def test_killing_the_child_fails_the_job_and_resume_continues(daemon):
    run_id = start(daemon, "slow")
    deadline = time.monotonic() + 60
    while daemon.get(f"/runs/{run_id}").json()["epoch"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job_id = daemon.get(f"/runs/{run_id}").json()["job_id"]
    children = [p for p in psutil.Process(daemon.proc.pid).children()
                if "appliance.jobs.child" in " ".join(p.cmdline())]
    assert len(children) == 1
    children[0].kill()
    job = daemon.wait_job(job_id)
    assert job["state"] == "failed" and "SIGKILL" in job["error"]
    run = wait_run(daemon, run_id)
    assert run["state"] == "failed"
    assert daemon.get("/health").json()["status"] == "ok"
    last = max(a["epoch"] for a in run["artifacts"] if a["kind"] == "checkpoint")

    out = daemon.cli("runs", "resume", str(run_id), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["resume"]["epoch"] == last
    run = wait_run(daemon, run_id)
    assert run["state"] == "succeeded" and run["attempts"] == 2
    started = [e["data"] for e in run_events(daemon, run_id) if e["type"] == "run.started"]
    assert [s["resumed_from_epoch"] for s in started] == [None, last]
    epochs = sorted(a["epoch"] for a in run["artifacts"] if a["kind"] == "checkpoint")
    assert epochs == list(range(1, run["epoch"] + 1))  # no epoch lost or repeated
    val = [m for m in series(daemon, run_id) if m[0] == "val_loss"]
    assert [m[2] for m in val] == list(range(1, run["epoch"] + 1))
    steps = [m[1] for m in series(daemon, run_id) if m[0] == "train_loss"]
    assert steps == sorted(set(steps))


def test_the_daemon_never_loads_torch_or_onnxruntime(daemon, fraud_run):
    maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "onnxruntime" not in maps  # training ran in child processes only


def test_a_resume_is_refused_for_a_run_that_succeeded(daemon, fraud_run):
    r = daemon.post(f"/runs/{fraud_run['id']}/resume")
    assert r.status_code == 409


# ------------------------------------------------------------------------------------------------ reproducibility


def test_same_seed_gives_identical_metrics_and_compare_shows_it(daemon):
    a, b = start(daemon, "segments"), start(daemon, "segments")
    ra, rb = wait_run(daemon, a), wait_run(daemon, b)
    assert ra["state"] == rb["state"] == "succeeded"
    assert series(daemon, a) == series(daemon, b) and len(series(daemon, a)) > 5
    assert ra["config_hash"] == rb["config_hash"]
    out = daemon.cli("runs", "compare", str(a), str(b), "--json")
    assert out.returncode == 0, out.stderr
    diff = json.loads(out.stdout)
    assert diff["params"] == {} and diff["metrics"] == {} and diff["data"] == {}


@pytest.fixture(scope="module")
def sweep(daemon) -> dict:
    out = daemon.cli("train", "segments", "--sweep", "--wait", "--json", timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sweep_runs_the_grid_and_picks_the_best(sweep):
    assert sweep["done"] and len(sweep["runs"]) == 2
    assert sorted(r["hyperparameters"]["lr"] for r in sweep["runs"]) == [0.00001, 0.03]
    assert sweep["best"]["val_loss"] == min(r["val_loss"] for r in sweep["runs"])
    assert sweep["best"]["hyperparameters"]["lr"] == 0.03


def test_sweeps_show_prints_the_best_trial_and_the_table_of_trials(daemon, sweep):
    out = daemon.cli("sweeps", "show", str(sweep["id"]))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    best = sweep["best"]
    assert lines[0] == f"sweep {sweep['id']} of spec segments: grid search, val_loss (min), 2 of 2 trial(s) finished"
    assert lines[1] == f"best: run {best['run_id']}  val_loss {best['val_loss']:.6g}  lr=0.03"
    assert lines[2].split() == ["RUN", "STATE", "VAL_LOSS", "LR", "BEST"]
    rows = {int(line.split()[0]): line.split() for line in lines[3:] if line.strip() and line.split()[0].isdigit()}
    assert set(rows) == {r["run_id"] for r in sweep["runs"]}
    for r in sweep["runs"]:
        assert rows[r["run_id"]][:4] == [str(r["run_id"]), "succeeded", f"{r['val_loss']:.6g}",
                                         str(r["hyperparameters"]["lr"])]
    assert rows[best["run_id"]][-1] == "*" and len(rows[next(i for i in rows if i != best["run_id"])]) == 4
    assert json.loads(daemon.cli("sweeps", "show", str(sweep["id"]), "--json").stdout)["best"] == best
    missing = daemon.cli("sweeps", "show", "999")
    assert missing.returncode != 0 and "no sweep 999" in missing.stderr and "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------------------------ the contract


def test_hook_register_trainers(daemon):
    trainers = {t["name"]: t for t in daemon.get("/training/trainers").json()}
    assert trainers["mlp"]["plugin"] == "training" and trainers["linear"]["plugin"] == "fixture_trainer"
    run = wait_run(daemon, start(daemon, "price"))  # the drop-in trainer, a regression, a time split
    assert run["state"] == "succeeded", daemon.get(f"/jobs/{run['job_id']}/logs").json()[-20:]
    assert run["result"]["model"]["parity_max_abs_diff"] <= 1e-4
    assert run["result"]["holdout_metrics"]["r2"] > 0.3
    resolved = daemon.get("/models/price/resolve/latest").json()
    assert resolved["signature"]["outputs"] == [{"name": "prediction", "dtype": "FP32", "shape": [-1, 1]}]


def test_spec_mistakes_name_file_line_and_key(daemon, tmp_path):
    bad = PROJECT.replace("layers = [16]", "layers = [16]\nbogus = 1")
    (tmp_path / "appliance.toml").write_text(bad)
    line = bad.splitlines().index("bogus = 1") + 1
    r = daemon.post("/apply", {"project": str(tmp_path / "appliance.toml")})
    assert r.status_code == 400
    assert re.search(rf"appliance.toml:{line}: training.fraud.hyperparameters.bogus: unknown hyperparameter",
                     r.json()["error"]["message"])
    r = daemon.post("/runs", {"spec": "fraud", "set": {"hyperparameters.layers": "wide"}})
    assert r.status_code == 400 and "hyperparameters.layers" in r.json()["error"]["message"]
    assert daemon.post("/runs", {"spec": "nope"}).status_code == 404


# ------------------------------------------------------------------------------------------------ security


def test_checkpoints_load_weights_only_and_no_pickle(daemon, tmp_path):
    import torch

    from appliance.artifacts import ArtifactStore
    from plugins.training.child import load_checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    store = ArtifactStore(tmp_path / "artifacts")
    bad = tmp_path / "evil.pt"
    torch.save({"format": 1, "state": Evil()}, bad)
    digest = store.put_file(bad)
    with pytest.raises(Exception, match="cannot be loaded safely"):
        load_checkpoint(store, digest)
    assert not marker.exists()
    for path in [*Path("plugins/training").glob("*.py"), *Path("plugins/registry").glob("*.py")]:
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_models_are_served_only_by_verified_hash(daemon, fraud_run):
    resolved = daemon.get("/models/fraud/resolve/1").json()
    path = Path(resolved["onnx_path"])
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original + b"tampered")
    try:
        r = daemon.get("/models/fraud/resolve/1")
        assert r.status_code == 500 and "does not match its hash" in r.json()["error"]["message"]
    finally:
        path.write_bytes(original)
    assert daemon.get("/models/fraud/resolve/1").status_code == 200
