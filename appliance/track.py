"""Track runs from any process: a training script, a notebook, or another machine through an SSH tunnel.

    import appliance.track as track

    with track.start_run("baseline", experiment="churn", params={"lr": 0.01}):
        for step in range(100):
            track.log_metrics({"loss": loss}, step=step)
        track.log_artifact("confusion.png")
        track.log_model("model.onnx", name="churn", sample="holdout.parquet")

It talks to the daemon's control API with the home's token: the daemon of ``APPLIANCE_HOME`` (or the default
home), or the one at ``APPLIANCE_URL`` with ``APPLIANCE_TOKEN`` (``ssh -L 7870:127.0.0.1:7870 box``, then
``APPLIANCE_URL=http://127.0.0.1:7870`` and the token from the box's home). Under ``appliance run``,
``APPLIANCE_RUN_ID`` names the command's run and ``start_run`` logs into it. Metrics are buffered and sent in
batches from a thread, as the box's own trainer sends them, so a training loop never waits on the network.
Runs appear in ``appliance runs``, ``runs compare`` (with the environment captured here: Python, packages, GPU,
git commit) and the dashboard, like runs the box trained itself.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import ApplianceError

__all__ = ["Run", "active_run", "end_run", "environment", "log_artifact", "log_metric", "log_metrics", "log_model",
           "log_params", "set_tags", "start_run"]

_active: Run | None = None
_lock = threading.Lock()


class Run:
    """A run being logged to. Thread-safe; ``log_metrics`` costs an append under a lock."""

    FLUSH_S = 0.25  # short enough that curves show live in the dashboard
    MAX_BATCH = 50_000  # rows per request; a backlog of four batches makes a logging call wait for the daemon

    def __init__(self, client, record: dict, *, attached: bool):
        self.client, self.record, self.attached = client, record, attached
        self.id: int = record["id"]
        self.ended = False
        self._rows: list[tuple] = []
        self._step = 0
        self._lock = threading.Lock()  # guards _rows and _step
        self._send_lock = threading.Lock()  # one batch on the wire at a time, in order
        self._error: ApplianceError | None = None
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._sender, name=f"appliance-track-{self.id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- logging

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Record ``{name: value}`` at ``step`` (by default one more than the last call's)."""
        error = self._error
        if error is not None and error.status < 500:
            self._error = None
            raise error  # the daemon refused an earlier batch: say so where the caller can see it
        now = time.time()
        rows = [(str(k), float(v)) for k, v in values.items()]
        for key, value in rows:
            if value != value:
                raise ApplianceError(f"metric {key!r} is NaN; the box keeps numbers only (skip it, or log it "
                                     "as a tag)", title="Bad metric")
        with self._lock:
            if step is None:
                step = self._step
            self._step = int(step) + 1
            self._rows.extend((k, int(step), v, now) for k, v in rows)
            backlog = len(self._rows)
        if backlog >= self.MAX_BATCH:
            self._wake.set()
            if backlog >= 4 * self.MAX_BATCH:
                self.flush()  # the daemon falls behind: wait for it, so memory stays bounded (raises if it is away)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def log_params(self, params: dict[str, Any]) -> None:
        """Record parameters (hyperparameters, settings); a value once logged cannot change."""
        self._call("POST", f"/runs/{self.id}/log", {"params": params})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("POST", f"/runs/{self.id}/log", {"tags": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, path: str | Path, name: str | None = None) -> dict:
        """Keep a file with the run (stored by hash in the box), under ``name`` (default: its file name)."""
        path = Path(path)
        return self._call("PUT", f"/runs/{self.id}/artifacts/{name or path.name}", raw=path.read_bytes())

    def log_model(self, path: str | Path, name: str | None = None, *, sample: str | Path | None = None,
                  description: str = "", tolerance: float | None = None) -> dict:
        """Keep an ONNX file with the run and, given ``name``, register it as the next version of that model
        (checked, with ``sample`` rows for parity, latency and the drift reference); returns the version (or
        the stored file without ``name``)."""
        from .cli.client import multipart

        path = Path(path)
        data = path.read_bytes()
        stored = self._call("PUT", f"/runs/{self.id}/artifacts/{path.name}", raw=data)
        if not name:
            return stored
        fields = {"run_id": str(self.id), "description": description}
        if tolerance is not None:
            fields["tolerance"] = str(tolerance)
        files = {"model": (path.name, data)}
        if sample is not None:
            files["sample"] = (Path(sample).name, Path(sample).read_bytes())
        body, ctype = multipart(fields, files)
        return self._call("POST", f"/models/{name}/versions", raw=body, content_type=ctype, timeout=600)

    # ------------------------------------------------------------------------------------------- sending

    def flush(self) -> None:
        """Send every buffered metric now; raises if the daemon does not take them."""
        with self._send_lock:
            while True:
                with self._lock:
                    rows, self._rows = self._rows[:self.MAX_BATCH], self._rows[self.MAX_BATCH:]
                if not rows:
                    return
                key, step, value, when = (list(c) for c in zip(*rows, strict=True))
                try:
                    self.client.request("POST", f"/runs/{self.id}/log",
                                        {"metrics": {"key": key, "step": step, "value": value, "time": when}})
                except ApplianceError as exc:
                    if exc.status >= 500:  # the daemon is away or stopping: keep them for the next try
                        with self._lock:
                            self._rows[:0] = rows
                    self._error = exc
                    raise
                self._error = None

    def _sender(self) -> None:
        while not self.ended:
            self._wake.wait(self.FLUSH_S)
            self._wake.clear()
            try:
                self.flush()
            except ApplianceError:
                pass  # kept in _error: end() or a full buffer raises it to the caller

    def _call(self, method: str, path: str, body: Any = None, **kw) -> Any:
        self.flush()  # metrics logged before a parameter or a file arrive before it
        return self.client.request(method, path, body, **kw)

    # ------------------------------------------------------------------------------------------- ending

    def end(self, state: str = "succeeded", error: str | None = None) -> None:
        """Send what is buffered and end the run (a run of ``appliance run`` ends with its command)."""
        global _active
        if self.ended:
            return
        try:
            self.flush()
            problem = self._error
        except ApplianceError as exc:
            problem = exc
        self.ended = True
        self._wake.set()
        with _lock:
            if _active is self:
                _active = None
        if not self.attached and not (problem and problem.status >= 500):
            if problem is not None:  # metrics were refused: the run did not record what it was told
                state, error = "failed", error or f"metrics refused by the daemon: {problem.message}"
            self.client.request("POST", f"/runs/{self.id}/end", {"state": state, "error": error})
        if problem is not None:
            raise problem

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("succeeded")
        else:
            self.end("cancelled" if issubclass(exc_type, KeyboardInterrupt) else "failed",
                     f"{exc_type.__name__}: {exc}"[:2000])


# ----------------------------------------------------------------------------------------------- the active run


def start_run(name: str | None = None, *, experiment: str = "default", params: dict | None = None,
              tags: dict | None = None, home: str | Path | None = None, url: str | None = None,
              token: str | None = None) -> Run:
    """Start a run (or, under ``appliance run``, join the command's run) and make it the active one."""
    global _active
    from .cli.client import Client

    if _active is not None:
        raise ApplianceError(f"run {_active.id} is still active: end it (appliance.track.end_run(), or leave its "
                             "with block) before starting another", title="Run already active")
    url, token = url or os.environ.get("APPLIANCE_URL"), token or os.environ.get("APPLIANCE_TOKEN")
    if url and not token:
        raise ApplianceError("APPLIANCE_URL needs APPLIANCE_TOKEN: the token file in the box's home",
                             title="No token")
    client = Client(None, url=url, token=token) if url else Client(Path(home) if home else _default_home())
    env = environment()
    joined = os.environ.get("APPLIANCE_RUN_ID")
    if joined:
        client.request("POST", f"/runs/{int(joined)}/log", {"params": params or {}, "tags": tags or {}, "env": env})
        record = client.request("GET", f"/runs/{int(joined)}")
    else:
        record = client.request("POST", "/runs/track", {
            "experiment": experiment, "name": name or _default_name(), "params": params or {},
            "tags": tags or {}, "env": env})
    run = Run(client, record, attached=bool(joined))
    with _lock:
        _active = run
    return run


def active_run() -> Run | None:
    return _active


def _run() -> Run:
    run = _active
    if run is None:
        raise ApplianceError("no active run: call appliance.track.start_run() first", title="No run")
    return run


def log_metrics(values: dict[str, float], step: int | None = None) -> None:
    _run().log_metrics(values, step)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    _run().log_metric(key, value, step)


def log_params(params: dict[str, Any]) -> None:
    _run().log_params(params)


def set_tags(tags: dict[str, str]) -> None:
    _run().set_tags(tags)


def log_artifact(path: str | Path, name: str | None = None) -> dict:
    return _run().log_artifact(path, name)


def log_model(path: str | Path, name: str | None = None, **kw) -> dict:
    return _run().log_model(path, name, **kw)


def end_run(state: str = "succeeded", error: str | None = None) -> None:
    run = _active
    if run is not None:
        run.end(state, error)


def _default_home() -> Path:
    from .home import default_home

    return default_home()


def _default_name() -> str:
    """The script's file name; ``notebook`` in Jupyter; ``python`` for ``python -c`` or a prompt."""
    script = sys.argv[0] if sys.argv else ""
    if script.endswith("ipykernel_launcher.py"):
        return "notebook"
    return Path(script).name if script and script != "-c" else "python"


# ----------------------------------------------------------------------------------------------- environment


def environment(directory: str | Path | None = None) -> dict:
    """What a run records about the machine it ran on: Python, installed packages, torch and CUDA (when torch is
    already imported), GPU and driver, and the git commit of ``directory`` (default: the script's, else the
    working directory) with a dirty flag."""
    if directory is None:
        script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
        directory = script.resolve().parent if script and script.is_file() else Path.cwd()
    env: dict[str, Any] = {
        "python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
        "machine": platform.machine(), "host": socket.gethostname(), "cpu_count": os.cpu_count(),
        "packages": _packages(), "gpu": None, "driver": None, "git": git_commit(directory)}
    torch = sys.modules.get("torch")  # never imported here: a script that uses it has it loaded already
    if torch is not None:
        env["torch"], env["cuda"] = getattr(torch, "__version__", None), getattr(torch.version, "cuda", None)
    gpu = nvidia_smi("name,driver_version")
    if gpu:
        env["gpu"], _, env["driver"] = (p.strip() for p in gpu.partition(","))
    return env


def _packages() -> dict[str, str]:
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[name.lower()] = dist.version
    return dict(sorted(out.items()))


def git_commit(directory: str | Path) -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``directory``, or None outside one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=directory, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def nvidia_smi(fields: str) -> str | None:
    """The first GPU's line of ``nvidia-smi --query-gpu=FIELDS`` (CSV, no units), or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


@atexit.register
def _end_at_exit() -> None:
    """A script that never called ``end_run`` still delivers its last metrics and ends its run."""
    run = _active
    if run is not None:
        try:
            run.end("failed" if _failed else "succeeded", _failed)
        except ApplianceError as exc:
            print(f"appliance.track: run {run.id} could not be ended: {exc}", file=sys.stderr)


_failed: str | None = None
_previous_hook = sys.excepthook


def _note_failure(exc_type, exc, tb) -> None:
    global _failed
    _failed = f"{exc_type.__name__}: {exc}"[:2000]
    _previous_hook(exc_type, exc, tb)


sys.excepthook = _note_failure
