"""The child side of a process job: ``python -m appliance.jobs.child``.

The daemon writes one JSON spec on stdin; the child imports the job's function, runs it, and reports as JSON
lines on its original stdout. Anything the job itself prints goes to stderr, which the daemon keeps as the job's
log. No pickle: the spec, messages and result are JSON.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


class ChildJob:
    """The handle a process job's ``run`` receives: like the in-daemon one, minus the stores."""

    def __init__(self, spec: dict, out):
        self.id = spec["job_id"]
        self.kind = spec["kind"]
        self.params = spec["params"]
        self.attempt = spec["attempt"]
        self.home = Path(spec["home"])
        #: The owning plugin's table of appliance.toml (the child cannot ask ``app.settings``).
        self.settings = spec.get("settings", {})
        self.cancelled = False
        self._out = out
        self._lock = threading.Lock()
        self._last_progress = 0.0

    @property
    def artifacts(self):
        from appliance.artifacts import ArtifactStore  # the artifact store is plain files: safe from a child

        return ArtifactStore(self.home / "artifacts")

    def _write(self, msg: dict) -> None:
        with self._lock:
            self._out.write(json.dumps(msg, default=str) + "\n")
            self._out.flush()

    def check_cancelled(self) -> None:
        """A child is cancelled by terminating it; there is nothing to poll."""

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        self._write({"t": "progress", "fraction": float(fraction), "message": message})

    def log(self, line: str) -> None:
        self._write({"t": "log", "line": str(line)})

    def send(self, type: str, data: dict) -> None:
        self._write({"t": "message", "type": type, "data": data})


def load_function(target: str, module_file: str | None) -> Any:
    module_name, _, qualname = target.partition(":")
    if module_file:
        spec = importlib.util.spec_from_file_location(module_name, module_file)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _exit_with_parent() -> None:
    """A child whose daemon died exits too: the restarted daemon retries the job, and two copies must not run."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(70)


def main() -> int:
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    # Keep the protocol stream to ourselves: fd 1 becomes stderr for the job's own prints and C libraries.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    spec = json.loads(sys.stdin.readline())
    job = ChildJob(spec, out)
    try:
        fn = load_function(spec["target"], spec.get("module_file"))
        result = fn(job)
        job._write({"t": "result", "value": result})
        return 0
    except Exception as exc:
        title = getattr(exc, "title", None)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        job._write({"t": "error", "title": title, "message": message, "traceback": traceback.format_exc()})
        return 1


if __name__ == "__main__":
    sys.exit(main())
