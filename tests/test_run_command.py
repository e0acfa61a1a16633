"""``appliance run [--gpu] -- python script.py``: the command as a GPU-gated job, its output in the job's log and
on the terminal, its metrics (its own through appliance.track, the system's sampled) and environment on its run,
and Ctrl-C, a cancel or a timeout stopping it and whatever it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess

SCRIPT = """
import os, sys, time
import appliance.track as track

track.start_run(params={"lr": float(sys.argv[1])})
for step in range(20):
    track.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    print(f"step {step} loss {1.0 / (step + 1):.3f}")
time.sleep(1.5)  # long enough for a sample of the system's figures
print("done", file=sys.stderr)
"""

SLEEPER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
print("started", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("command")
    with DaemonProcess(root / "home", make_project(root / "project", [], "")) as d:
        d.root = root
        (root / "train.py").write_text(SCRIPT)
        (root / "sleeper.py").write_text(SLEEPER)
        yield d


def cli(d, *args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", "--home", str(d.home), *args]


@pytest.fixture(scope="module", autouse=True)
def activated(box):
    """As in a shell with the virtualenv activated: ``python`` is its interpreter."""
    box.env = {**box.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_a_script_run_under_the_box_logs_into_its_run_with_its_output_and_environment(box):
    out = subprocess.run(cli(box, "run", "--gpu", "--", "python", "train.py", "0.5"), cwd=box.root,
                         capture_output=True, text=True, timeout=120, env=box.env)
    assert out.returncode == 0, out.stderr
    assert "step 19 loss 0.050" in out.stdout and "done" in out.stdout  # the job's log, as it came
    run_id = int(out.stderr.split()[1])
    run = box.get(f"/runs/{run_id}").json()
    assert run["state"] == "succeeded" and run["experiment"] == "commands"
    assert run["spec"]["source"] == "command" and run["spec"]["command"][1:] == ["train.py", "0.5"]
    assert run["params"]["hyperparameters"] == {"lr": 0.5}
    job = box.get(f"/jobs/{run['job_id']}").json()
    assert job["kind"] == "command_gpu" and job["gpu"] and job["state"] == "succeeded"
    lines = [line["line"] for line in box.get(f"/jobs/{job['id']}/logs").json()]
    assert "step 0 loss 1.000" in lines and "done" in lines
    loss = box.get(f"/runs/{run_id}/metrics", params={"key": "loss"}).json()
    assert [m["step"] for m in loss] == list(range(20))
    assert {"system/cpu_percent", "system/process_rss_mb"} <= set(run["metrics"])
    # The script's own environment (its packages, via appliance.track) and the machine's (the command, git).
    assert run["env"]["packages"]["numpy"] and run["env"]["command"][1:] == ["train.py", "0.5"]
    assert run["env"]["cwd"] == str(box.root) and run["env"]["python"] == sys.version.split()[0]


def test_ctrl_c_cancels_the_command_and_everything_it_started(box):
    proc = subprocess.Popen(cli(box, "run", "--", "python", "sleeper.py", str(box.root / "pids")), cwd=box.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=box.env)
    assert proc.stdout.readline().strip() == "started"
    pids = [int(p) for p in (box.root / "pids").read_text().split()]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    run_id = int(err.split()[1])
    assert box.get(f"/runs/{run_id}").json()["state"] == "cancelled"
    assert gone(pids), f"the command's processes {pids} outlived its cancel"


def test_a_timeout_stops_the_command_and_fails_its_run(box):
    # Long enough for the sleeper to start its own child and write both pids even on a loaded box.
    out = subprocess.run(cli(box, "run", "--timeout", "5", "--", "python", "sleeper.py", str(box.root / "pids2")),
                         cwd=box.root, capture_output=True, text=True, timeout=60, env=box.env)
    assert out.returncode == 1
    assert "timed out after 5 s" in out.stderr
    assert gone([int(p) for p in (box.root / "pids2").read_text().split()])


def test_a_failing_or_missing_command_fails_its_run_with_the_reason(box):
    out = subprocess.run(cli(box, "run", "--", sys.executable, "-c", "import sys; sys.exit(3)"), cwd=box.root,
                         capture_output=True, text=True, timeout=60, env=box.env)
    assert out.returncode == 1 and "the command exited with code 3" in out.stderr
    out = subprocess.run(cli(box, "run", "--", "./no-such-program"), cwd=box.root, capture_output=True, text=True,
                         timeout=60, env=box.env)
    assert out.returncode == 1 and "cannot start './no-such-program'" in out.stderr
    r = box.post("/runs/command", {"command": ["true"], "cwd": "relative/dir"})
    assert r.status_code == 400 and "'cwd' must be an absolute path" in r.json()["error"]["message"]
