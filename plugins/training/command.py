"""A command run under the box's care (``appliance run [--gpu] -- python train.py``), in the job's child process.

The command runs in its own process group as the daemon's user, with its output in the job's log, system (and
GPU) metrics sampled onto its run, and ``APPLIANCE_RUN_ID`` (and ``MLFLOW_RUN_ID``, with the tracking URI and
token) set, so ``appliance.track`` or MLflow's client inside it log into that run. Cancelling or timing out the
job stops the whole group: SIGTERM, then SIGKILL after a grace period; so does the daemon going away.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

from appliance import ApplianceError

GRACE_S = 3.0  # the runner kills the child itself 5 s after its SIGTERM: the group must be gone before that
SAMPLE_S = 1.0


def run_command(job) -> dict:
    """The ``command`` and ``command_gpu`` job kinds (run in the child process)."""
    from .child import Reporter
    from .system import Sampler, machine

    params = job.params
    run_id, command, cwd = params["run_id"], params["command"], params["cwd"]
    reporter = Reporter(job, run_id)
    env = machine(cwd)
    for key in ("python", "executable"):  # the daemon's; the command may run any interpreter (its client says)
        env.pop(key, None)
    env.update(command=command, cwd=cwd)
    reporter.send("command_started", {"attempt": job.attempt, "env": env})
    try:
        proc = subprocess.Popen(command, cwd=cwd, env=_environment(job, run_id, params.get("env") or {}),
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        reporter.close()
        raise ApplianceError(f"cannot start {command[0]!r}: {exc.strerror or exc}", title="Command failed") from None
    stop = _Stopper(proc)
    sampler = Sampler(reporter.log_metrics, SAMPLE_S, pid=proc.pid, gpu=shutil.which("nvidia-smi") is not None)
    sampler.start()
    try:
        code = stop.wait()
    finally:
        sampler.stop()
        reporter.close()
    if code != 0:
        why = f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.Signals._value2member_map_ \
            else f"exited with code {code}"
        raise ApplianceError(f"the command {why}", title="Command failed")
    return {"run_id": run_id, "exit_code": code}


def _environment(job, run_id: int, extra: dict) -> dict:
    """The daemon's environment with the run's coordinates, so the command's tracking client finds its run."""
    env = {**os.environ, **extra, "APPLIANCE_HOME": str(job.home), "APPLIANCE_RUN_ID": str(run_id),
           "PYTHONUNBUFFERED": "1"}  # print() lines reach the job's log as they are written
    try:
        url = json.loads((job.home / "daemon.json").read_text())["url"]
        token = (job.home / "token").read_text().strip()
    except (OSError, ValueError, KeyError):
        return env
    env.update(MLFLOW_TRACKING_URI=f"{url}/api/v1/mlflow", MLFLOW_TRACKING_TOKEN=token, MLFLOW_RUN_ID=str(run_id))
    return env


class _Stopper:
    """Waits for the command; on SIGTERM (cancel, timeout, shutdown) or the daemon's death, stops its group."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.parent = os.getppid()
        self.asked: float | None = None
        signal.signal(signal.SIGTERM, self._terminate)
        threading.Thread(target=self._watch_parent, daemon=True).start()

    def _terminate(self, signum, frame) -> None:
        if self.asked is None:
            self.asked = time.monotonic()
            self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _watch_parent(self) -> None:
        while self.proc.poll() is None:
            if os.getppid() != self.parent:  # the daemon died: a restarted one must not find this still running
                self._signal(signal.SIGKILL)
                os._exit(70)
            time.sleep(0.1)

    def wait(self) -> int:
        while True:
            try:
                code = self.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                if self.asked is not None and time.monotonic() - self.asked > GRACE_S:
                    self._signal(signal.SIGKILL)
                continue
            self._signal(signal.SIGKILL)  # whatever the command started and left behind goes with it
            return code
