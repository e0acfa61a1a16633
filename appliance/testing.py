"""Test helpers for the appliance and for plugin authors: a real daemon process on a free loopback port.

    from appliance.testing import DaemonProcess

    def test_my_plugin(tmp_path):
        with DaemonProcess(tmp_path / "home", project=my_project_dir) as d:
            assert d.get("/plugins").status_code == 200
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


class DaemonProcess:
    """``appliance up`` in a subprocess with its own home; HTTP helpers carry the token."""

    def __init__(self, home: Path, project: Path | None = None, *, env: dict | None = None,
                 args: tuple[str, ...] = (), cwd: Path | None = None):
        self.home = Path(home)
        #: The daemon's working directory (the test's, unless given).
        self.cwd = Path(cwd) if cwd else None
        self.project = Path(project) if project else None
        # Serving gets a free port too unless a test asks otherwise, so daemons side by side never collide.
        self.env = {**os.environ, "APPLIANCE_SERVING_PORT": "0", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.http: httpx.Client | None = None
        self.stderr_path = self.home.parent / f"{self.home.name}-daemon-stderr.log"

    # ------------------------------------------------------------------------------------------- process

    def command(self) -> list[str]:
        # -P: the working directory is not put on sys.path, so an appliance/ (or plugins/, tui.py) beside the
        # tests cannot stand in for the installed one, as it cannot for the `appliance` script.
        cmd = [sys.executable, "-P", "-m", "appliance", "--home", str(self.home), "up", "--port", "0"]
        if self.project:
            cmd += ["--project", str(self.project)]
        return cmd + list(self.args)

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.stderr_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(self.command(), env=self.env, stdout=err, stderr=err,
                                     stdin=subprocess.DEVNULL, cwd=self.cwd)
        err.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        info_path = self.home / "daemon.json"
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                info = json.loads(info_path.read_text())
                if self.proc is None or info.get("pid") == self.proc.pid:
                    self._connect(info)
                    if self.http.get("/api/v1/health").status_code == 200:
                        return
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not ready after {timeout} s:\n{self.stderr()}")

    def _connect(self, info: dict) -> None:
        if self.http is not None:
            self.http.close()
        self.info = info
        self.url = info["url"]
        self.token = (self.home / "token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=30.0)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.http:
                self.http.close()
                self.http = None

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up."""
        assert self.proc
        self.proc.kill()
        self.proc.wait(10)
        if self.http:
            self.http.close()
            self.http = None

    def restart(self, timeout: float = 30.0) -> DaemonProcess:
        if self.proc and self.proc.poll() is None:
            self.stop()
        return self.start(timeout)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.stop(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    # ------------------------------------------------------------------------------------------- HTTP

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get("/api/v1" + path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=json if json is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete("/api/v1" + path, **kw)

    def submit(self, kind: str, params: dict | None = None, **extra: Any) -> dict:
        r = self.post("/jobs", {"kind": kind, "params": params or {}, **extra})
        assert r.status_code == 202, r.text
        return r.json()

    def wait_job(self, job_id: int, states=("succeeded", "failed", "cancelled"), timeout: float = 60.0) -> dict:
        """The job once it is in one of ``states`` (or at ``timeout``). Waits on the daemon's long poll for the
        job's end, so a bench that times a job neither loads the daemon with polls nor hears of the end late."""
        deadline = time.monotonic() + timeout
        ended = ("succeeded", "failed", "cancelled")
        final = set(states) <= set(ended)
        while True:
            left = deadline - time.monotonic()
            wait = max(1, min(20, int(left))) if final and left > 1 else 0
            job = self.get(f"/jobs/{job_id}", params={"wait": wait} if wait else None, timeout=wait + 30).json()
            if job["state"] in states or (final and job["state"] in ended) or time.monotonic() > deadline:
                return job
            if not wait:
                time.sleep(0.05)

    def events(self, type: str | None = None, after: int = 0, limit: int = 10_000) -> list[dict]:
        params = {"after": after, "limit": limit}
        if type:
            params["type"] = type
        return self.get("/events", params=params).json()

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``appliance --home HOME ARGS`` as a user would."""
        return subprocess.run([sys.executable, "-P", "-m", "appliance", "--home", str(self.home), *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.cwd)
