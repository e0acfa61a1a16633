"""The job runner: a queue in the catalog, worker threads, the GPU gate, retries, timeouts and cancel.

Every state change is written to ``jobs`` before its event goes out, so a daemon killed at any point restarts
knowing what ran: jobs it finds ``running`` were cut off, and are failed, then retried if their policy allows.
A write the catalog refuses (a full disk, no descriptors left) never costs a job or a worker: the job's end is
kept (``ends``) and written again by the dispatcher until the catalog takes it, while the worker runs the next
job; progress and log lines it refuses are dropped, and the job runs on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contract import JobKind
from ..errors import ApplianceError, BadRequest, Conflict, NotFound
from ..faults import fault_point
from ..health import Problem
from . import ends
from .ends import End
from .handle import Cancelled, JobHandle
from .process import run_in_child

if TYPE_CHECKING:
    from ..app import Appliance

log = logging.getLogger("appliance.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

#: How often the dispatcher tries again to record the ends the catalog refused.
RECORD_RETRY_S = 1.0


class Stopping(ApplianceError):
    status = 503
    default_title = "Daemon stopping"


@dataclass
class _Running:
    job_id: int
    kind: JobKind
    handle: JobHandle
    gpu: bool
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None
    timed_out: bool = False
    user_cancelled: bool = False
    shutdown: bool = False
    timer: threading.Timer | None = None
    log_seq: list[int] = field(default_factory=lambda: [0])
    #: Progress and log writes the catalog refused: dropped (the job runs on), said once in the daemon's log.
    dropped: int = 0


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ApplianceError) else f"{type(exc).__name__}: {exc}"


def job_row(row: dict) -> dict:
    out = dict(row)
    out["params"] = json.loads(row["params"] or "{}")
    out["result"] = json.loads(row["result"]) if row.get("result") else None
    out["gpu"] = bool(row["gpu"])
    return out


class JobRunner:
    def __init__(self, app: Appliance, *, workers: int = 4, gpu_slots: int = 1):
        self.app = app
        self.kinds = app.host.registries["job_kinds"]
        self.workers = max(1, workers)
        self.gpu_slots = max(0, gpu_slots)
        self._cv = threading.Condition()
        self._running: dict[int, _Running] = {}
        #: Ends the catalog refused, by job id, until the dispatcher has written them.
        self._unrecorded: dict[int, End] = {}
        self._accepting = True
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._last_dispatch_error = ""
        app.health.watch(self._health)

    @property
    def db(self):
        return self.app.catalog.db

    def _emit(self, type: str, job_id: int, **data: Any) -> None:
        self.app.events.emit(type, subject=f"job:{job_id}", data={"job_id": job_id, **data})

    def _emit_news(self, type: str, job_id: int, **data: Any) -> None:
        """An event that is news, not a record (queued, started): lost, not fatal, if the catalog refuses it."""
        try:
            self._emit(type, job_id, **data)
        except Exception as exc:
            log.warning("job %s: event %s not recorded: %s", job_id, type, _why(exc))

    # ------------------------------------------------------------------------------------------- reading

    def get(self, job_id: int) -> dict:
        rows = list(self.db.query("select * from jobs where id = ?", [int(job_id)]))
        if not rows:
            raise NotFound(f"no job {job_id}")
        return self._as_ended(job_row(rows[0]))

    def list(self, *, state: str | None = None, kind: str | None = None, limit: int = 100,
             before: int | None = None) -> list[dict]:
        if state and state not in STATES:
            raise BadRequest(f"unknown job state {state!r}; expected one of {', '.join(STATES)}")
        sql, args = "select * from jobs where 1=1", []
        if state:
            sql += " and state = ?"
            args.append(state)
        if kind:
            sql += " and kind = ?"
            args.append(kind)
        if before:
            sql += " and id < ?"
            args.append(int(before))
        sql += " order by id desc limit ?"
        args.append(int(limit))
        return [self._as_ended(job_row(r)) for r in self.db.query(sql, args)]

    def _as_ended(self, job: dict) -> dict:
        """The job as its end will be recorded, when the catalog refused that end so far."""
        end = self._unrecorded.get(job["id"])
        if end is None or end.written:
            return job
        note = f"not recorded yet: {end.refused}"
        return {**job, "state": end.state, "error": end.error if end.state != "cancelled" else job["error"],
                "message": f"{end.message()} ({note})" if end.message() else note}

    def _health(self) -> list[Problem]:
        refused = [end for end in list(self._unrecorded.values()) if end.refused]
        if not refused:
            return []
        return [Problem("jobs", "degraded", f"{len(refused)} job end(s) not recorded yet: {refused[-1].refused}",
                        "the runner records them once the catalog takes writes again (free space on the home's "
                        "disk, close idle connections); a daemon stopped before that fails them at its next "
                        "start and retries them as their policy says")]

    def logs(self, job_id: int, *, after: int = 0, limit: int = 1000) -> list[dict]:
        self.get(job_id)
        return list(self.db.query(
            "select seq, time, line from job_logs where job_id = ? and seq > ? order by seq limit ?",
            [int(job_id), int(after), int(limit)]))

    def counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self.db.query("select state, count(*) n from jobs group by state")}

    # ------------------------------------------------------------------------------------------- submitting

    def submit(self, kind: str, params: dict | None = None, *, retries: int | None = None,
               backoff_s: float | None = None, timeout_s: float | None = None, origin: str = "") -> dict:
        """Queue a job; returns its record. Per-job ``retries``/``backoff_s``/``timeout_s`` override the kind's."""
        spec = self.kinds.get(kind)
        if spec is None:
            known = ", ".join(sorted(self.kinds.names())) or "none"
            raise NotFound(f"unknown job kind {kind!r}; registered kinds: {known}")
        params = params or {}
        if not isinstance(params, dict):
            raise BadRequest(f"job params must be an object, got {type(params).__name__}")
        params = spec.checked_params(params)  # the kind's declared options, with their defaults
        try:
            params_json = json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"job params must be JSON: {exc}") from None
        retries = spec.retries if retries is None else int(retries)
        if retries < 0:
            raise BadRequest(f"retries must be >= 0, got {retries}")
        if not self._accepting:
            raise Stopping("the daemon is shutting down and takes no new jobs")
        now = time.time()
        with self._cv:
            cur = self.db.execute(
                "insert into jobs (kind, params, state, max_attempts, backoff_s, timeout_s, gpu, created, origin)"
                " values (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                [kind, params_json, retries + 1, spec.backoff_s if backoff_s is None else float(backoff_s),
                 spec.timeout_s if timeout_s is None else float(timeout_s), int(spec.gpu), now, origin])
            job_id = cur.lastrowid
            self._emit_news("job.queued", job_id, kind=kind, origin=origin)
            job = self.get(job_id)  # read before the dispatcher wakes: the caller sees it queued
            self._cv.notify_all()
        return job

    def cancel(self, job_id: int) -> dict:
        with self._cv:
            end = self._unrecorded.get(int(job_id))
            if end is not None and not end.written:
                if not end.cancel():
                    raise Conflict(f"job {job_id} has already {end.state}; there is nothing to cancel")
                self._settle(end)
                return self.get(job_id)
        job = self.get(job_id)
        if job["state"] in TERMINAL:
            raise Conflict(f"job {job_id} has already {job['state']}; there is nothing to cancel")
        with self._cv:
            running = self._running.get(job["id"])
            if running is None:
                self.db.execute("update jobs set state='cancelled', finished=?, message='cancelled' "
                                "where id=? and state='queued'", [time.time(), job["id"]])
                self._emit("job.cancelled", job["id"], kind=job["kind"])
                self._cv.notify_all()
            else:
                running.user_cancelled = True
                self._interrupt(running)
        return self.get(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        """Block until the job reaches a final state (or ``timeout``); returns its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                job = self.get(job_id)
                if job["state"] in TERMINAL:
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._cv.wait(0.5 if left is None else min(left, 0.5))

    # ------------------------------------------------------------------------------------------- lifecycle

    def recover(self) -> None:
        """Fail the jobs a dead daemon left running, and queue their retries where the policy allows."""
        for row in list(self.db.query("select * from jobs where state = 'running'")):
            error = f"the daemon stopped while this job was running (daemon pid {row['daemon_pid']})"
            with self._cv:
                self._settle(ends.failure(row, row["attempt"], error))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float) -> None:
        """Stop taking work, let running jobs finish for ``drain_s``, then interrupt them (queued again)."""
        with self._cv:
            self._accepting = False
            self._cv.notify_all()
        deadline = time.monotonic() + drain_s
        with self._cv:
            while self._running and time.monotonic() < deadline:
                self._cv.wait(min(0.2, max(0.01, deadline - time.monotonic())))
            for running in self._running.values():
                running.shutdown = True
                self._interrupt(running)
            end = time.monotonic() + 5
            while self._running and time.monotonic() < end:
                self._cv.wait(0.1)
            self._stopped = True
            self._cv.notify_all()
        if self._thread:
            self._thread.join(2)
        with self._cv:
            self._record_refused()
            if self._unrecorded:
                log.error("%d job end(s) could not be recorded (%s); the next start fails them and retries them "
                          "as their policy says", len(self._unrecorded), next(iter(self._unrecorded.values())).refused)

    # ------------------------------------------------------------------------------------------- dispatch

    def _loop(self) -> None:
        # Nothing that fails here may end this thread: it is the only one that starts jobs.
        while True:
            with self._cv:
                if self._stopped:
                    return
                wake = 1.0
                try:
                    wake = min(self._record_refused(), self._dispatch())
                except Exception as exc:
                    self._dispatch_failed(exc)
                self._cv.wait(wake)

    def _dispatch_failed(self, exc: Exception) -> None:
        why = _why(exc)
        if why != self._last_dispatch_error:  # once per distinct failure, not once a second
            log.error("job dispatch failed; trying again every second: %s", why,
                      exc_info=not isinstance(exc, ApplianceError))
            self._last_dispatch_error = why

    def _dispatch(self) -> float:
        if not self._accepting:
            return 1.0
        now = time.time()
        wake = 5.0
        gpu_busy = sum(1 for r in self._running.values() if r.gpu)
        for row in list(self.db.query("select * from jobs where state = 'queued' order by id")):
            if len(self._running) >= self.workers:
                break
            if row["not_before"] > now:
                wake = min(wake, row["not_before"] - now)
                continue
            if row["id"] in self._unrecorded:
                continue
            kind = self.kinds.get(row["kind"])
            if kind is None:
                error = f"job kind {row['kind']!r} is not registered (is its plugin loaded?)"
                self._settle(End(row["id"], row["kind"], "failed", row["attempt"], error=error))
                continue
            if row["gpu"]:
                if gpu_busy >= self.gpu_slots:
                    continue
                gpu_busy += 1
            self._launch(row, kind)
        self._last_dispatch_error = ""
        return max(0.05, wake)

    def _launch(self, row: dict, kind: JobKind) -> None:
        job_id = row["id"]
        attempt = row["attempt"] + 1
        # Refused, this changes nothing: the job stays queued, and the dispatcher tries again.
        self.db.execute("update jobs set state='running', started=?, attempt=?, daemon_pid=?, progress=0, "
                        "message='' where id=?", [time.time(), attempt, os.getpid(), job_id])
        running = _Running(job_id, kind, None, bool(row["gpu"]))  # type: ignore[arg-type]
        self._running[job_id] = running
        try:
            running.log_seq[0] = self.db.execute("select coalesce(max(seq), 0) from job_logs where job_id=?",
                                                 [job_id]).fetchone()[0]
            running.handle = JobHandle(job_id, kind.name, json.loads(row["params"]), attempt, self.app,
                                       lambda t, d: self._report(running, t, d))
            self._emit_news("job.started", job_id, kind=kind.name, attempt=attempt,
                            max_attempts=row["max_attempts"])
            if row["timeout_s"]:
                running.timer = threading.Timer(row["timeout_s"], self._time_out, [running])
                running.timer.daemon = True
                running.timer.start()
            fault_point(f"jobs.start.{kind.name}")
            running.thread = threading.Thread(target=self._execute, args=(running, row), name=f"job-{job_id}",
                                              daemon=True)
            running.thread.start()
        except Exception as exc:  # no thread runs it: queue it again, this attempt not counted
            log.warning("job %s (%s) could not start: %s", job_id, kind.name, _why(exc))
            self._running.pop(job_id, None)
            if running.timer:
                running.timer.cancel()
            self._settle(End(job_id, kind.name, "unstarted", attempt, error=_why(exc), delay_s=ends.START_RETRY_S))

    def _time_out(self, running: _Running) -> None:
        running.timed_out = True
        self._interrupt(running)

    def _interrupt(self, running: _Running) -> None:
        running.handle._cancel.set()
        proc = running.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            threading.Timer(5, lambda: proc.poll() is None and proc.kill()).start()

    # ------------------------------------------------------------------------------------------- recording

    def _settle(self, end: End) -> bool:
        """Record ``end`` now, or keep it for the dispatcher to record; True when recorded. Hold ``_cv``."""
        try:
            if not end.written:
                ends.write(self.db, end)
                end.written = True
            ends.announce(self._emit, end)
        except Exception as exc:
            if not end.refused:
                log.warning("job %s: the catalog refused its end (%s); recording it when the catalog takes "
                            "writes again", end.job_id, _why(exc))
            end.refused = _why(exc)
            self._unrecorded[end.job_id] = end
            self._cv.notify_all()
            return False
        if end.refused:
            log.info("job %s: its end (%s) is recorded now", end.job_id, end.outcome)
        self._unrecorded.pop(end.job_id, None)
        self._cv.notify_all()
        return True

    def _record_refused(self) -> float:
        """Write the ends the catalog refused, oldest first; returns how soon to try again."""
        for end in list(self._unrecorded.values()):
            if not self._settle(end):
                return RECORD_RETRY_S
        return 5.0

    # ------------------------------------------------------------------------------------------- running

    def _execute(self, running: _Running, row: dict) -> None:
        try:
            outcome, result, error = self._run(running)
            fault_point("jobs.ended")
        except BaseException as exc:  # a bug of ours (or a fault point) gets here; the job still ends, worker freed
            log.exception("job %s: the runner failed around it", running.job_id)
            outcome, result, error = "failed", None, _why(exc)
        with contextlib.suppress(Exception):
            self.app.store.release()
        if running.timer:
            running.timer.cancel()
        if running.timed_out:
            outcome, error = "failed", f"timed out after {row['timeout_s']:g} s"
        elif running.user_cancelled:
            outcome, error = "cancelled", None
        elif running.shutdown:
            outcome = "interrupted"
        with self._cv:
            try:
                attempt = running.handle.attempt
                if outcome == "failed":
                    end = ends.failure(row, attempt, error or "failed")
                else:
                    end = End(running.job_id, running.kind.name, outcome, attempt, result=result)
                self._settle(end)
            finally:
                self._running.pop(running.job_id, None)
                self._cv.notify_all()

    def _run(self, running: _Running) -> tuple[str, Any, str | None]:
        """Run the job's code; returns its outcome, result and error."""
        kind = running.kind
        try:
            result = (run_in_child(running, str(self.app.home.root), lambda t, d: self._report(running, t, d),
                                   self._interrupt, self.app.settings(self.kinds.owner(kind.name) or ""))
                      if kind.process else kind.run(running.handle))
            json.dumps(result)
        except Cancelled:
            return "cancelled", None, None
        except ApplianceError as exc:
            return "failed", None, exc.message
        except (TypeError, ValueError) as exc:
            self._report(running, "log", {"line": traceback.format_exc()})
            return "failed", None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._report(running, "log", {"line": traceback.format_exc()})
            owner = self.kinds.owner(kind.name) or "?"
            self.app.host.record_failure(owner, f"job:{kind.name}", error, traceback.format_exc())
            return "failed", None, error
        return "succeeded", result, None

    def _report(self, running: _Running, what: str, data: dict) -> None:
        try:
            self._write_report(running, what, data)
        except Exception as exc:
            running.dropped += 1
            if running.dropped == 1:
                log.warning("job %s: the catalog refused its %s (%s); progress and log lines it refuses are "
                            "dropped, the job runs on", running.job_id, what, _why(exc))

    def _write_report(self, running: _Running, what: str, data: dict) -> None:
        job_id = running.job_id
        if what in ("progress", "log"):
            fault_point("jobs.report")
        if what == "progress":
            self.db.execute("update jobs set progress=?, message=? where id=?",
                            [data["fraction"], data.get("message", ""), job_id])
            self._emit("job.progress", job_id, kind=running.kind.name, **data)
        elif what == "log":
            with self._cv:
                running.log_seq[0] += 1
                seq = running.log_seq[0]
            self.db.execute("insert into job_logs (job_id, seq, time, line) values (?, ?, ?, ?)",
                            [job_id, seq, time.time(), data["line"][:100_000]])
        elif what == "message" and running.kind.on_message is not None:
            try:
                running.kind.on_message(running.handle, data["type"], data["data"])
            except Exception as exc:
                owner = self.kinds.owner(running.kind.name) or "?"
                self.app.host.record_failure(owner, f"job:{running.kind.name}:on_message",
                                             f"{type(exc).__name__}: {exc}", traceback.format_exc())
