"""The job runner: a queue in the catalog, worker threads, the GPU gate, retries, timeouts and cancel.

Every state change is written to ``jobs`` before its event goes out, so a daemon killed at any point restarts
knowing what ran: jobs it finds ``running`` were cut off, and are failed, then retried if their policy allows.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contract import JobKind
from ..errors import ApplianceError, BadRequest, Conflict, NotFound
from .handle import Cancelled, JobHandle

if TYPE_CHECKING:
    from ..app import Appliance

log = logging.getLogger("appliance.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_BACKOFF_S = 300.0


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
        self._accepting = True
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def db(self):
        return self.app.catalog.db

    def _emit(self, type: str, job_id: int, **data: Any) -> None:
        self.app.events.emit(type, subject=f"job:{job_id}", data={"job_id": job_id, **data})

    # ------------------------------------------------------------------------------------------- reading

    def get(self, job_id: int) -> dict:
        rows = list(self.db.query("select * from jobs where id = ?", [int(job_id)]))
        if not rows:
            raise NotFound(f"no job {job_id}")
        return job_row(rows[0])

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
        return [job_row(r) for r in self.db.query(sql, args)]

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
            self._emit("job.queued", job_id, kind=kind, origin=origin)
            job = self.get(job_id)  # read before the dispatcher wakes: the caller sees it queued
            self._cv.notify_all()
        return job

    def cancel(self, job_id: int) -> dict:
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
            self._after_failure(row, error)

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

    # ------------------------------------------------------------------------------------------- dispatch

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._stopped:
                    return
                wake = 1.0
                try:
                    wake = self._dispatch()
                except Exception:
                    log.exception("job dispatch failed")
                self._cv.wait(wake)

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
            kind = self.kinds.get(row["kind"])
            if kind is None:
                self.db.execute("update jobs set state='failed', finished=?, error=? where id=?",
                                [now, f"job kind {row['kind']!r} is not registered (is its plugin loaded?)",
                                 row["id"]])
                self._emit("job.failed", row["id"], kind=row["kind"], error="job kind not registered")
                continue
            if row["gpu"]:
                if gpu_busy >= self.gpu_slots:
                    continue
                gpu_busy += 1
            self._launch(row, kind)
        return max(0.05, wake)

    def _launch(self, row: dict, kind: JobKind) -> None:
        job_id = row["id"]
        attempt = row["attempt"] + 1
        self.db.execute("update jobs set state='running', started=?, attempt=?, daemon_pid=?, progress=0, "
                        "message='' where id=?", [time.time(), attempt, os.getpid(), job_id])
        seq = self.db.execute("select coalesce(max(seq), 0) from job_logs where job_id=?", [job_id]).fetchone()[0]
        running = _Running(job_id, kind, None, bool(row["gpu"]))  # type: ignore[arg-type]
        running.log_seq[0] = seq
        running.handle = JobHandle(job_id, kind.name, json.loads(row["params"]), attempt, self.app,
                                   lambda t, d: self._report(running, t, d))
        self._running[job_id] = running
        self._emit("job.started", job_id, kind=kind.name, attempt=attempt, max_attempts=row["max_attempts"])
        if row["timeout_s"]:
            running.timer = threading.Timer(row["timeout_s"], self._time_out, [running])
            running.timer.daemon = True
            running.timer.start()
        running.thread = threading.Thread(target=self._execute, args=(running, row), name=f"job-{job_id}",
                                          daemon=True)
        running.thread.start()

    def _time_out(self, running: _Running) -> None:
        running.timed_out = True
        self._interrupt(running)

    def _interrupt(self, running: _Running) -> None:
        running.handle._cancel.set()
        proc = running.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            threading.Timer(5, lambda: proc.poll() is None and proc.kill()).start()

    # ------------------------------------------------------------------------------------------- running

    def _execute(self, running: _Running, row: dict) -> None:
        kind, handle = running.kind, running.handle
        outcome, result, error = "succeeded", None, None
        try:
            if kind.process:
                result = self._run_child(running)
            else:
                result = kind.run(handle)
            json.dumps(result)
        except Cancelled:
            outcome = "cancelled"
        except ApplianceError as exc:
            outcome, error = "failed", exc.message
        except (TypeError, ValueError) as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            self._report(running, "log", {"line": traceback.format_exc()})
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            self._report(running, "log", {"line": traceback.format_exc()})
            owner = self.kinds.owner(kind.name) or "?"
            self.app.host.record_failure(owner, f"job:{kind.name}", error, traceback.format_exc())
        self.app.store.release()
        if running.timer:
            running.timer.cancel()
        if running.timed_out:
            outcome, error = "failed", f"timed out after {row['timeout_s']:g} s"
        elif running.user_cancelled:
            outcome, error = "cancelled", None
        elif running.shutdown:
            outcome = "interrupted"
        self._finish(running, outcome, result, error)

    def _finish(self, running: _Running, outcome: str, result: Any, error: str | None) -> None:
        job_id = running.job_id
        with self._cv:
            now = time.time()
            if outcome == "succeeded":
                self.db.execute("update jobs set state='succeeded', finished=?, progress=1, result=?, error=null "
                                "where id=?", [now, json.dumps(result), job_id])
                self._emit("job.succeeded", job_id, kind=running.kind.name, attempt=running.handle.attempt)
            elif outcome == "cancelled":
                self.db.execute("update jobs set state='cancelled', finished=?, message='cancelled' where id=?",
                                [now, job_id])
                self._emit("job.cancelled", job_id, kind=running.kind.name)
            elif outcome == "interrupted":
                self.db.execute("update jobs set state='queued', message='interrupted by daemon shutdown; runs "
                                "again at the next start' where id=?", [job_id])
                self._emit("job.interrupted", job_id, kind=running.kind.name)
            else:
                self._after_failure(self.get(job_id), error or "failed")
            self._running.pop(job_id, None)
            self._cv.notify_all()

    def _after_failure(self, row: dict, error: str) -> None:
        now = time.time()
        if row["attempt"] < row["max_attempts"]:
            delay = min(MAX_BACKOFF_S, row["backoff_s"] * 2 ** max(0, row["attempt"] - 1))
            self.db.execute("update jobs set state='queued', error=?, not_before=?, message=? where id=?",
                            [error, now + delay, f"attempt {row['attempt']} failed; retrying in {delay:g} s",
                             row["id"]])
            self._emit("job.failed", row["id"], kind=row["kind"], error=error, attempt=row["attempt"],
                       will_retry=True, retry_in_s=delay)
        else:
            self.db.execute("update jobs set state='failed', finished=?, error=? where id=?",
                            [now, error, row["id"]])
            self._emit("job.failed", row["id"], kind=row["kind"], error=error, attempt=row["attempt"],
                       will_retry=False)

    def _report(self, running: _Running, what: str, data: dict) -> None:
        job_id = running.job_id
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

    def _run_child(self, running: _Running) -> Any:
        kind, handle = running.kind, running.handle
        fn = kind.run
        module = sys.modules.get(fn.__module__)
        module_file = getattr(module, "__file__", None) if fn.__module__.startswith("appliance_dropin_") else None
        spec = {"target": f"{fn.__module__}:{fn.__qualname__}", "module_file": module_file,
                "job_id": handle.id, "kind": kind.name, "params": handle.params, "attempt": handle.attempt,
                "home": str(self.app.home.root), "settings": self.app.settings(self.kinds.owner(kind.name) or "")}
        # -P: nothing in the daemon's working directory (a triton/ export, say) may stand in for a real module.
        proc = subprocess.Popen([sys.executable, "-P", "-m", "appliance.jobs.child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        running.proc = proc
        if handle.cancelled:
            self._interrupt(running)
        stderr_thread = threading.Thread(target=self._pump_stderr, args=(running, proc), daemon=True)
        stderr_thread.start()
        assert proc.stdin and proc.stdout
        try:
            proc.stdin.write(json.dumps(spec) + "\n")
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        outcome: dict | None = None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self._report(running, "log", {"line": line.rstrip("\n")})
                continue
            t = msg.get("t")
            if t in ("result", "error"):
                outcome = msg
            elif t == "progress":
                self._report(running, "progress", {"fraction": msg["fraction"], "message": msg.get("message", "")})
            elif t in ("log", "message"):
                self._report(running, t, msg)
        code = proc.wait()
        stderr_thread.join(5)
        if handle.cancelled and not running.timed_out and (running.user_cancelled or running.shutdown):
            raise Cancelled()
        if outcome and outcome["t"] == "result" and code == 0:
            return outcome.get("value")
        if outcome and outcome["t"] == "error":
            self._report(running, "log", {"line": outcome.get("traceback", "")})
            raise ApplianceError(outcome.get("message") or "the job failed", title=outcome.get("title"))
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            raise ApplianceError(f"the job's child process was killed by {name}{hint}")
        raise ApplianceError(f"the job's child process exited with code {code} before reporting a result")

    def _pump_stderr(self, running: _Running, proc: subprocess.Popen) -> None:
        assert proc.stderr
        for line in proc.stderr:
            self._report(running, "log", {"line": line.rstrip("\n")})
