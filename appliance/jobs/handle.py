"""What a running job's code sees: its params, and ways to report progress, logs and messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Cancelled(Exception):
    """Raised by ``job.check_cancelled()``; the runner records the job as cancelled, not failed."""


class JobHandle:
    """Handed to an in-process job's ``run``. Thread-safe; progress writes are throttled."""

    def __init__(self, job_id: int, kind: str, params: dict, attempt: int, app: Any,
                 report: Callable[[str, dict], None]):
        self.id = job_id
        self.kind = kind
        self.params = params
        self.attempt = attempt
        self.app = app
        self._report = report
        self._cancel = threading.Event()
        self._last_progress = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancel; returns True if cancelled."""
        return self._cancel.wait(seconds)

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        self._report("progress", {"fraction": max(0.0, min(1.0, float(fraction))), "message": message})

    def log(self, line: str) -> None:
        self._report("log", {"line": str(line)})

    def send(self, type: str, data: dict) -> None:
        """A message for the kind's ``on_message`` (the same call a child process job makes)."""
        self._report("message", {"type": type, "data": data})
