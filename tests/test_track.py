"""``appliance.track`` from another process: a script logs params, metrics, a file and an ONNX model to a real
daemon; its runs are ordinary runs (``appliance runs``, ``runs compare`` with the caller's environment, the
metric series the dashboard draws); it works by URL and token as through an SSH tunnel; bad input is refused
with a message that names it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import make_project
from serving_models import linear_model

from appliance.testing import DaemonProcess

SCRIPT = """
import sys
import appliance.track as track

lr = float(sys.argv[1])
with track.start_run("baseline", experiment="churn", params={"lr": lr, "layers": [8, 4]}, tags={"team": "ml"}):
    for step in range(500):
        track.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 500}, step=step)
    track.log_artifact("notes.txt")
    track.log_artifact("notes.txt", name="reports/first look.txt")
    if len(sys.argv) > 2:
        print("version", track.log_model(sys.argv[2], name="tracked")["version"])
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    project = make_project(root / "project", [], "")
    with DaemonProcess(root / "home", project) as d:
        d.root = root
        yield d


def workdir(root: Path) -> Path:
    """A user's directory: a git checkout holding the script and a file it logs."""
    work = root / "work"
    if not work.exists():
        work.mkdir()
        (work / "train.py").write_text(SCRIPT)
        (work / "notes.txt").write_text("the baseline, with all features\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
        subprocess.run([*git[:5], "init", "-q", str(work)], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return work


def python(d, work: Path, *args: str, env: dict | None = None, code: str | None = None):
    run_env = {**os.environ, "APPLIANCE_HOME": str(d.home), **(env or {})}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "train.py"]
    return subprocess.run([*cmd, *args], cwd=work, capture_output=True, text=True, timeout=60, env=run_env)


def commit(work: Path) -> str:
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_a_script_logs_params_metrics_a_file_and_a_model_into_an_ordinary_run(box, tmp_path):
    work = workdir(box.root)
    model = linear_model(tmp_path / "m.onnx", seed=3)
    out = python(box, work, "0.01", str(model))
    assert out.returncode == 0, out.stderr
    run = box.get("/runs", params={"experiment": "churn"}).json()[0]
    assert (run["spec_name"], run["state"], run["experiment"]) == ("baseline", "succeeded", "churn")
    run = box.get(f"/runs/{run['id']}").json()
    assert run["params"]["hyperparameters"] == {"lr": 0.01, "layers": [8, 4]} and run["tags"] == {"team": "ml"}
    # Every metric arrived, in order, as the series the dashboard draws its curves from.
    loss = box.get(f"/runs/{run['id']}/metrics", params={"key": "loss", "limit": 10_000}).json()
    assert [m["step"] for m in loss] == list(range(500)) and loss[-1]["value"] == pytest.approx(1 / 500)
    assert run["metrics"]["acc"] == pytest.approx(499 / 500)
    # The caller's environment: Python, its packages, the git commit of the script's checkout.
    env = run["env"]
    assert env["python"] == sys.version.split()[0] and env["packages"]["numpy"]
    assert env["git"] == {"commit": commit(work), "dirty": False}
    # The file, by hash, and the model: kept with the run and registered with the run as its lineage.
    notes = (work / "notes.txt").read_bytes()
    files = box.get(f"/runs/{run['id']}/artifacts").json()
    assert {f["path"]: f["sha256"] for f in files} == {"notes.txt": hashlib.sha256(notes).hexdigest(),
                                                      "reports/first look.txt": hashlib.sha256(notes).hexdigest(),
                                                      "m.onnx": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert box.get(f"/runs/{run['id']}/artifacts/notes.txt").content == notes
    version = int(out.stdout.split()[-1])
    assert box.get(f"/models/tracked/versions/{version}").json()["run_id"] == run["id"]
    shown = box.cli("runs", "show", str(run["id"]))
    assert shown.returncode == 0, shown.stderr
    assert "tracked from outside (track)" in shown.stdout and "lr=0.01" in shown.stdout
    assert "notes.txt" in shown.stdout and commit(work)[:12] in shown.stdout and "loss" in shown.stdout


def test_runs_compare_shows_what_changed_between_two_scripts_runs(box):
    work = workdir(box.root)
    assert python(box, work, "0.1").returncode == 0
    (work / "train.py").write_text(SCRIPT.replace("1.0 / (step + 1)", "2.0 / (step + 1)"))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work), "commit", "-qam", "x2"],
                   check=True)
    assert python(box, work, "0.2").returncode == 0
    b, a = (r["id"] for r in box.get("/runs", params={"experiment": "churn", "limit": 2}).json())
    diff = box.get("/runs/compare", params={"a": a, "b": b}).json()
    assert diff["params"] == {"hyperparameters.lr": {"a": 0.1, "b": 0.2}}
    assert set(diff["environment"]) == {"git.commit"}
    assert diff["metrics"]["loss"]["b"] == pytest.approx(2 * diff["metrics"]["loss"]["a"])
    out = box.cli("runs", "compare", str(a), str(b))
    assert "git.commit" in out.stdout and "hyperparameters.lr" in out.stdout


def test_a_url_and_token_reach_the_daemon_as_through_an_ssh_tunnel(box, tmp_path):
    code = textwrap.dedent("""
        import appliance.track as track
        run = track.start_run("remote", experiment="tunnel")
        track.log_metrics({"loss": 0.5})
        track.end_run()
        print(run.id)
    """)
    env = {"APPLIANCE_HOME": str(tmp_path / "no-home-here"), "APPLIANCE_URL": box.url, "APPLIANCE_TOKEN": box.token}
    out = python(box, tmp_path, env=env, code=code)
    assert out.returncode == 0, out.stderr
    run = box.get(f"/runs/{int(out.stdout)}").json()
    assert run["state"] == "succeeded" and run["metrics"] == {"loss": 0.5} and run["experiment"] == "tunnel"
    env["APPLIANCE_TOKEN"] = "wrong"
    out = python(box, tmp_path, env=env, code=code)
    assert out.returncode != 0 and "Unauthorized: wrong token" in out.stderr


def test_a_file_larger_than_the_control_apis_usual_body_limit_is_kept(box, tmp_path):
    """A checkpoint is often tens of MB: an artifact upload is not held to the 16 MB of other bodies."""
    (tmp_path / "ckpt.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    code = textwrap.dedent("""
        import appliance.track as track
        with track.start_run("big-file") as run:
            track.log_artifact("ckpt.bin")
        print(run.id)
    """)
    out = python(box, tmp_path, code=code)
    assert out.returncode == 0, out.stderr
    kept = box.get(f"/runs/{int(out.stdout)}/artifacts/ckpt.bin").content
    assert hashlib.sha256(kept).digest() == hashlib.sha256((tmp_path / "ckpt.bin").read_bytes()).digest()


def test_a_script_that_dies_ends_its_run_failed_with_its_last_metrics_sent(box, tmp_path):
    code = textwrap.dedent("""
        import appliance.track as track
        track.start_run("crash", experiment="crashes")
        for step in range(100):
            track.log_metrics({"loss": float(step)}, step=step)
        raise RuntimeError("diverged at step 99")
    """)
    out = python(box, tmp_path, code=code)
    assert out.returncode == 1 and "diverged" in out.stderr
    run = box.get("/runs", params={"experiment": "crashes"}).json()[0]
    assert run["state"] == "failed" and run["error"] == "RuntimeError: diverged at step 99"
    assert len(box.get(f"/runs/{run['id']}/metrics", params={"key": "loss"}).json()) == 100
    resumed = box.post(f"/runs/{run['id']}/resume")  # there is no checkpoint or trainer to resume it with
    assert resumed.status_code == 409 and "tracked from outside" in resumed.json()["error"]["message"]


def test_bad_input_is_refused_with_a_message_naming_it(box, tmp_path):
    code = textwrap.dedent("""
        import json, sys
        import appliance.track as track
        from appliance import ApplianceError
        run = track.start_run("bad", experiment="bad", params={"lr": 0.1})
        said = []
        for attempt in (lambda: track.start_run("second"),
                        lambda: track.log_metrics({"loss": float("nan")}, step=3),
                        lambda: track.log_params({"lr": 0.2}),
                        lambda: track.log_artifact(sys.argv[1], name="../../etc/passwd")):
            try:
                attempt()
                said.append(None)
            except ApplianceError as exc:
                said.append(str(exc))
        print(json.dumps(said))
    """)
    (tmp_path / "f.txt").write_text("x")
    out = python(box, tmp_path, str(tmp_path / "f.txt"), code=code)
    assert out.returncode == 0, out.stderr
    second, nan, param, path = json.loads(out.stdout)
    assert f"run {box.get('/runs', params={'experiment': 'bad'}).json()[0]['id']} is still active" in second
    assert "metric 'loss' is NaN" in nan
    assert "parameter 'lr' of run" in param and "is 0.1; it cannot change to 0.2" in param
    assert "artifact path '../../etc/passwd'" in path
    trained = box.post("/runs/track", {"experiment": "x", "name": "y", "nonsense": 1})
    assert trained.status_code == 400 and "unknown field(s) nonsense" in trained.json()["error"]["message"]
    r = box.post("/runs/1/log", {"metrics": {"key": ["a"], "value": [1.0, 2.0], "step": [1]}})
    assert r.status_code == 400 and "differ in length" in r.json()["error"]["message"]
