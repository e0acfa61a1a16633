"""MLflow's own client, unchanged, in its own virtualenv, logging to the appliance: a run with params, 10k metrics,
tags and files, read back by MLflow's client and shown by ``appliance runs``; MLflow inside ``appliance run``
logging into the command's run; and calls outside the covered part refused by name."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import make_project

from appliance.testing import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".cache" / "mlflow-client-venv"
PACKAGES = ["mlflow-skinny>=3,<4"]
QUIET = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}

LOG = """
import json, os, sys, time
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

work = sys.argv[1]
mlflow.set_experiment("mlflow-compat")
with mlflow.start_run(run_name="from-mlflow") as run:
    mlflow.log_param("lr", 0.01)
    mlflow.log_params({"layers": "[64, 32]", "optimizer": "adam"})
    mlflow.set_tag("team", "ml")
    mlflow.set_tags({"stage": "dev"})
    for step in range(5):
        mlflow.log_metric("val_auc", 0.5 + step / 10, step=step)
    mlflow.log_metrics({"epoch_time": 1.5, "lr_now": 0.01}, step=0)
    client = MlflowClient()
    now = int(time.time() * 1000)
    for first in range(0, 10_000, 1000):
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1 / (s + 1), now, s)
                                                    for s in range(first, first + 1000)])
    mlflow.log_artifact(os.path.join(work, "notes.txt"))
    mlflow.log_artifacts(os.path.join(work, "plots"), artifact_path="plots")
run_id = run.info.run_id
got = client.get_run(run_id)
history = client.get_metric_history(run_id, "loss")
listed = sorted(f.path for f in client.list_artifacts(run_id)) + \\
    sorted(f.path for f in client.list_artifacts(run_id, "plots"))
notes = open(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt")).read()
print(json.dumps({"run_id": run_id, "status": got.info.status, "params": got.data.params, "tags": got.data.tags,
                  "metrics": got.data.metrics, "history": [[m.step, m.value] for m in history],
                  "listed": listed, "notes": notes}))
"""


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    """MLflow's client in a virtualenv of its own, made once and kept under bench/.cache (as the benches keep
    theirs); a lock keeps parallel test workers from making it twice."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".mlflow-client-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   *PACKAGES], capture_output=True, text=True, env={**os.environ, **QUIET})
            assert done.returncode == 0, f"could not install {PACKAGES} from PyPI:\n{done.stderr[-2000:]}"
            (VENV / ".complete").touch()
    return python


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with DaemonProcess(root / "home", make_project(root / "project", [], "")) as d:
        d.root = root
        d.mlflow_env = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": f"{d.url}/api/v1/mlflow",
                        "MLFLOW_TRACKING_TOKEN": d.token}
        yield d


def run_mlflow(python: Path, env: dict, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=180, env=env)


def test_mlflows_client_logs_a_run_with_params_10k_metrics_tags_and_files(box, mlflow_python, tmp_path):
    (tmp_path / "notes.txt").write_text("trained on the March data\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.txt").write_text("0,0\n1,1\n")
    out = run_mlflow(mlflow_python, box.mlflow_env, LOG, str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # MLflow's client reads back what it wrote.
    assert seen["status"] == "FINISHED"
    assert seen["params"] == {"lr": "0.01", "layers": "[64, 32]", "optimizer": "adam"}
    assert {"team": "ml", "stage": "dev"}.items() <= seen["tags"].items()
    assert seen["history"] == [[s, pytest.approx(1 / (s + 1))] for s in range(10_000)]
    assert seen["metrics"]["val_auc"] == pytest.approx(0.9) and seen["metrics"]["loss"] == pytest.approx(1e-4)
    assert seen["listed"] == ["notes.txt", "plots", "plots/roc.txt"]
    assert seen["notes"] == "trained on the March data\n"
    # And the appliance shows it as one of its runs: state, params, every metric, the files by hash.
    run_id = int(seen["run_id"])
    run = box.get(f"/runs/{run_id}").json()
    assert (run["spec_name"], run["experiment"], run["state"]) == ("from-mlflow", "mlflow-compat", "succeeded")
    assert run["params"]["hyperparameters"]["optimizer"] == "adam" and run["tags"]["team"] == "ml"
    series = box.get(f"/runs/{run_id}/metrics", params={"key": "loss", "limit": 100_000}).json()
    assert [m["step"] for m in series] == list(range(10_000))
    files = {f["path"]: f["sha256"] for f in box.get(f"/runs/{run_id}/artifacts").json()}
    assert files == {"notes.txt": hashlib.sha256(b"trained on the March data\n").hexdigest(),
                     "plots/roc.txt": hashlib.sha256(b"0,0\n1,1\n").hexdigest()}
    shown = box.cli("runs", "show", str(run_id))
    assert shown.returncode == 0, shown.stderr
    for text in ("from-mlflow", "tracked from outside (mlflow)", "optimizer=adam", "team=ml", "val_auc",
                 "plots/roc.txt"):
        assert text in shown.stdout
    listed = box.cli("runs", "list", "--experiment", "mlflow-compat")
    assert "from-mlflow" in listed.stdout and "succeeded" in listed.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_dashboard_lists_an_mlflow_run_and_draws_its_curves(box, mlflow_python, tmp_path, anyio_backend):
    from tui.app import ApplianceApp
    from tui.client import ApiClient
    from tui.widgets.table import PagedTable

    if not box.get("/runs", params={"experiment": "mlflow-compat"}).json():
        test_mlflows_client_logs_a_run_with_params_10k_metrics_tags_and_files(box, mlflow_python, tmp_path)
    app = ApplianceApp(ApiClient(box.home), home=box.home, readonly=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("5")
        runs = None
        for _ in range(200):
            await pilot.pause(0.05)
            found = app.screen.query("#runs")
            runs = found.first(PagedTable) if found else None
            if runs is not None and any(r["spec_name"] == "from-mlflow" for r in runs.rows_all):
                break
        row = next(i for i, r in enumerate(runs.shown) if r["spec_name"] == "from-mlflow")
        runs.move_cursor(row=row)
        curves = ""
        for _ in range(200):
            await pilot.pause(0.05)
            curves = str(app.screen.query_one("#curves").render())
            if "loss" in curves:
                break
        assert "from-mlflow" in curves and "loss" in curves and "val_auc" in curves


def test_mlflow_inside_appliance_run_logs_into_the_commands_run(box, mlflow_python, tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import mlflow
        with mlflow.start_run():
            mlflow.log_param("seed", 3)
            mlflow.log_metric("loss", 0.25, step=1)
        print("logged")
    """))
    out = subprocess.run([sys.executable, "-m", "appliance", "--home", str(box.home), "run", "--",
                          str(mlflow_python), "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**box.env, **QUIET})
    assert out.returncode == 0, out.stderr
    assert "logged" in out.stdout
    run = box.get(f"/runs/{int(out.stderr.split()[1])}").json()
    assert run["state"] == "succeeded" and run["spec"]["source"] == "command"
    assert run["params"]["hyperparameters"] == {"seed": "3"} and run["metrics"]["loss"] == 0.25


def test_calls_outside_the_covered_part_and_a_wrong_token_are_refused_by_name(box, mlflow_python):
    code = textwrap.dedent("""
        import json, mlflow
        from mlflow.tracking import MlflowClient
        said = []
        for call in (lambda: MlflowClient().search_runs(["1"]),
                     lambda: MlflowClient().create_registered_model("fraud"),
                     lambda: mlflow.start_run(run_id="not-ours")):
            try:
                call()
                said.append(None)
            except Exception as exc:
                said.append(str(exc))
        print(json.dumps(said))
    """)
    out = run_mlflow(mlflow_python, box.mlflow_env, code)
    assert out.returncode == 0, out.stderr[-3000:]
    search, registry, foreign = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ENDPOINT_NOT_FOUND" in search and "mlflow.search_runs" in search and "is not part of" in search
    assert "ENDPOINT_NOT_FOUND" in registry and "appliance models register" in registry
    assert "no run 'not-ours'" in foreign
    out = run_mlflow(mlflow_python, {**box.mlflow_env, "MLFLOW_TRACKING_TOKEN": "wrong"},
                     "import mlflow; mlflow.set_experiment('x')")
    assert out.returncode != 0 and "wrong token" in out.stderr
