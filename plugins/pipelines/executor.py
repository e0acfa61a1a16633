"""Running one pipeline run: a thread that submits each ready step as a job and follows it to the end.

The run's state lives in the catalog, not in this object: the executor rebuilds what it knows from
``pipeline_run_steps`` and the jobs table on every pass, so a run cut off by a daemon stop resumes at the next
start by starting a new executor on the same run. Retries, backoff, timeouts and the GPU gate are the job
runner's; a step only chooses them.
"""

from __future__ import annotations

import logging
import threading

from appliance import ApplianceError, Conflict

from .records import STEP_DONE, Records
from .spec import Step

log = logging.getLogger("appliance.pipelines")

JOB_DONE = frozenset({"succeeded", "failed", "cancelled"})
#: How long a run waits for news of its jobs before looking again anyway (news normally wakes it at once).
POLL_S = 1.0


class RunExecutor:
    def __init__(self, app, records: Records, run_id: int, pipeline: str, steps: list[Step],
                 wake: threading.Condition, on_done):
        self.app = app
        self.records = records
        self.run_id = run_id
        self.pipeline = pipeline
        self.steps = {s.name: s for s in steps}
        self.wake = wake
        self.on_done = on_done
        self.cancel_requested = False
        self._cancelled_jobs: set[int] = set()
        self.thread = threading.Thread(target=self._main, name=f"pipeline-run-{run_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.cancel_requested = True
        with self.wake:
            self.wake.notify_all()

    # ------------------------------------------------------------------------------------------- the loop

    def _emit(self, type: str, **data) -> None:
        self.app.events.emit(type, subject=f"pipeline:{self.pipeline}",
                             data={"pipeline": self.pipeline, "run_id": self.run_id, **data})

    def _main(self) -> None:
        try:
            while not self.app.stopping.is_set():
                if self._step():
                    return
                with self.wake:
                    self.wake.wait(POLL_S)
        except _Stopping:
            pass
        except Exception:
            # The run stays 'running' in the catalog and resumes at the next start; say why it stalled now.
            log.exception("pipeline %s run %s stalled", self.pipeline, self.run_id)
            self.app.host.record_failure("pipelines", f"run {self.run_id}", "pipeline run executor failed")
        finally:
            self.on_done(self)

    def _step(self) -> bool:
        """One pass over the run's steps; True when the run has finished."""
        rows = {r["step"]: r for r in self.records.steps(self.run_id)}
        for name, row in rows.items():
            if row["status"] == "running":
                self._follow(name, row)
        rows = {r["step"]: r for r in self.records.steps(self.run_id)}
        status = {n: r["status"] for n, r in rows.items()}
        if self.cancel_requested:
            for name, row in rows.items():
                if row["status"] == "pending":
                    self.records.update_step(self.run_id, name, status="cancelled")
                    status[name] = "cancelled"
                elif row["status"] == "running" and row["job_id"] not in self._cancelled_jobs:
                    self._cancelled_jobs.add(row["job_id"])
                    try:
                        self.app.jobs.cancel(row["job_id"])
                    except Conflict:
                        pass  # it finished meanwhile; the next pass records how
        else:
            progressed = True
            while progressed:  # a skip can make further steps skippable in the same pass
                progressed = False
                for name, step in self.steps.items():
                    if status[name] != "pending":
                        continue
                    bad = [d for d in step.depends_on if status[d] in ("failed", "skipped", "cancelled")]
                    if bad:
                        reason = f"skipped: upstream step {bad[0]!r} {status[bad[0]]}"
                        self.records.update_step(self.run_id, name, status="skipped", error=reason)
                        status[name] = "skipped"
                        self._emit("pipeline.step_finished", step=name, status="skipped", error=reason)
                        progressed = True
                    elif all(status[d] == "succeeded" for d in step.depends_on):
                        status[name] = self._submit(step)
                        progressed = True
        if all(s in STEP_DONE for s in status.values()):
            self._finish(status)
            return True
        return False

    def _submit(self, step: Step) -> str:
        try:
            job = self.app.jobs.submit(step.kind, step.params, retries=step.retries, backoff_s=step.backoff_s,
                                       timeout_s=step.timeout_s, origin=f"pipeline:{self.pipeline}#{self.run_id}")
        except ApplianceError as exc:
            if self.app.stopping.is_set():
                raise _Stopping() from exc
            self.records.update_step(self.run_id, step.name, status="failed", error=exc.message)
            self._emit("pipeline.step_finished", step=step.name, status="failed", error=exc.message)
            return "failed"
        self.records.update_step(self.run_id, step.name, status="running", job_id=job["id"],
                                 started=job["created"])
        self._emit("pipeline.step_started", step=step.name, kind=step.kind, job_id=job["id"])
        return "running"

    def _follow(self, name: str, row: dict) -> None:
        job = self.app.jobs.get(row["job_id"])
        if job["state"] not in JOB_DONE:
            return
        self.records.update_step(self.run_id, name, status=job["state"], attempts=job["attempt"],
                                 error=job["error"], started=job["started"] or row["started"],
                                 finished=job["finished"])
        self._emit("pipeline.step_finished", step=name, status=job["state"], job_id=job["id"],
                   attempts=job["attempt"], error=job["error"])

    def _finish(self, status: dict[str, str]) -> None:
        failed = [n for n, s in status.items() if s == "failed"]
        if failed:
            outcome, reason = "failed", f"step(s) {', '.join(failed)} failed"
        elif self.cancel_requested or "cancelled" in status.values():
            outcome, reason = "cancelled", "cancelled"
        else:
            outcome, reason = "succeeded", ""
        if not self.records.finish_run(self.run_id, outcome, reason):
            return
        self._emit("pipeline.run_finished", status=outcome, reason=reason)
        if outcome == "failed":
            errors = {r["step"]: r["error"] for r in self.records.steps(self.run_id) if r["step"] in failed}
            detail = "; ".join(f"{n}: {e}" for n, e in errors.items())
            self.app.events.emit("alert.raised", subject=f"pipeline:{self.pipeline}", data={
                "rule": "pipeline_failed", "subject": self.pipeline, "severity": "error", "run_id": self.run_id,
                "message": f"pipeline {self.pipeline!r} run {self.run_id} failed: {detail}"})


class _Stopping(Exception):
    """The daemon began to stop while a step was being submitted: leave the run to resume at the next start."""
