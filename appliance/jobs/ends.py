"""A job's end as the runner records it: the state the job is left in, and the event that says so.

An end is written in two steps, the job's row then its event, and each step can be repeated safely: when the
catalog refuses one (a full disk, no descriptors left), the runner keeps the end, frees the job's worker, and
writes the rest later. Until then the job reads as it will be recorded, marked as not recorded yet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..faults import fault_point

MAX_BACKOFF_S = 300.0

#: How a failed start is retried: soon, but not in a loop that spins on a failing resource.
START_RETRY_S = 1.0


@dataclass
class End:
    """How one attempt of a job ended.

    ``outcome``: succeeded, cancelled, failed (for good), retry (failed; queued again after ``delay_s``),
    interrupted (queued again by a daemon shutdown) or unstarted (its start failed; queued again, the attempt
    not counted).
    """

    job_id: int
    kind: str
    outcome: str
    attempt: int
    result: Any = None
    error: str | None = None
    delay_s: float = 0.0
    #: The job's row is written; only its event is left.
    written: bool = False
    #: Why the catalog last refused this end (empty once it took it, or before it was tried).
    refused: str = ""

    @property
    def state(self) -> str:
        return {"succeeded": "succeeded", "cancelled": "cancelled", "failed": "failed"}.get(self.outcome, "queued")

    def message(self) -> str:
        return {"retry": f"attempt {self.attempt} failed; retrying in {self.delay_s:g} s",
                "interrupted": "interrupted by daemon shutdown; runs again at the next start",
                "unstarted": f"could not start ({self.error}); trying again shortly"}.get(self.outcome, "")

    def cancel(self) -> bool:
        """Turn a retry or a requeue not yet written into a cancel; False when the job had ended for good."""
        if self.written or self.state != "queued":
            return False
        self.outcome, self.error = "cancelled", None
        return True


def failure(row: dict, attempt: int, error: str) -> End:
    """A failed attempt: retried with exponential backoff while the job's policy allows, else failed."""
    if attempt < row["max_attempts"]:
        delay = min(MAX_BACKOFF_S, row["backoff_s"] * 2 ** max(0, attempt - 1))
        return End(row["id"], row["kind"], "retry", attempt, error=error, delay_s=delay)
    return End(row["id"], row["kind"], "failed", attempt, error=error)


def write(db, end: End) -> None:
    """The job's row as the end leaves it (idempotent)."""
    now = time.time()
    if end.outcome in ("retry", "failed"):
        fault_point("jobs.record_failure")
    if end.outcome == "succeeded":
        db.execute("update jobs set state='succeeded', finished=?, progress=1, result=?, error=null where id=?",
                   [now, json.dumps(end.result), end.job_id])
    elif end.outcome == "cancelled":
        db.execute("update jobs set state='cancelled', finished=?, message='cancelled' where id=?", [now, end.job_id])
    elif end.outcome == "failed":
        db.execute("update jobs set state='failed', finished=?, error=? where id=?", [now, end.error, end.job_id])
    elif end.outcome == "unstarted":
        db.execute("update jobs set state='queued', attempt=?, not_before=?, message=? where id=?",
                   [end.attempt - 1, now + end.delay_s, end.message(), end.job_id])
    else:
        db.execute("update jobs set state='queued', error=?, not_before=?, message=? where id=?",
                   [end.error, now + end.delay_s, end.message(), end.job_id])


def announce(emit: Callable[..., Any], end: End) -> None:
    """The event for the end (none for an attempt that never started: nothing happened)."""
    if end.outcome == "succeeded":
        emit("job.succeeded", end.job_id, kind=end.kind, attempt=end.attempt)
    elif end.outcome == "cancelled":
        emit("job.cancelled", end.job_id, kind=end.kind)
    elif end.outcome == "interrupted":
        emit("job.interrupted", end.job_id, kind=end.kind)
    elif end.outcome in ("retry", "failed"):
        retry = {"retry_in_s": end.delay_s} if end.outcome == "retry" else {}
        emit("job.failed", end.job_id, kind=end.kind, error=end.error, attempt=end.attempt,
             will_retry=end.outcome == "retry", **retry)
