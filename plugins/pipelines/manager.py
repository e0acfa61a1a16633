"""The pipelines room in the daemon: schedules on APScheduler, catch-up, overlap, event triggers, runs.

Schedules never silently skip: each schedule's last handled fire time is kept in ``schedule_state``, and every
fire (from APScheduler, or at start after the daemon was down) computes all fire times between that and now from
the trigger itself. One fire time is an ordinary run; several mean some were missed, so one catch-up run starts
and its record lists them. APScheduler's own misfire handling only knows what happened while it was running.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from datetime import UTC, datetime

from appliance import Conflict, NotFound

from . import spec
from .executor import RunExecutor
from .records import Records

#: At most this many missed fire times are listed on a catch-up run; the rest are counted in its cause.
MAX_LISTED = 1000


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def make_trigger(when: spec.When, anchor: float):
    if when.cron:
        return spec.cron_trigger(when.cron)
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=when.interval_s, start_date=_dt(anchor + when.interval_s), timezone=UTC)


def fire_times(trigger, last: float, now: float, limit: int = 100_000) -> list[float]:
    """Every fire time of ``trigger`` after ``last`` and not after ``now``."""
    out: list[float] = []
    prev, end = _dt(last), _dt(now)
    while len(out) < limit:
        nxt = trigger.get_next_fire_time(prev, prev)
        if nxt is None or nxt > end:
            break
        out.append(nxt.timestamp())
        prev = nxt
    return out


class Pipelines:
    """One per daemon: owns the scheduler thread, the debounce timers and the live run executors."""

    def __init__(self):
        self.app = None
        self.records: Records | None = None
        self.project = spec.Project({}, {})
        self.pending: tuple[object, spec.Project] | None = None
        self.lock = threading.RLock()
        self.wake = threading.Condition()
        self.executors: dict[int, RunExecutor] = {}
        self.scheduler = None
        self.armed: dict[str, str] = {}
        self._windows: dict[tuple[str, int], dict] = {}
        self._windows_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- lifecycle

    def configure(self, app, config) -> None:
        """Check the new configuration; it takes effect once the whole project has been accepted."""
        self.pending = (config, spec.read(config, app.registry("job_kinds")))

    def startup(self, app) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.app = app
        self.records = Records(app)
        # APScheduler logs every fire at INFO; our own records and events already say what ran.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.scheduler.start()
        app.events.listen(self.on_event)
        for run in self.records.active_runs():
            app.events.emit("pipeline.run_resumed", subject=f"pipeline:{run['pipeline']}",
                            data={"pipeline": run["pipeline"], "run_id": run["id"]})
            self._resume(run)
        if self.pending:
            self.install(self.pending[1])

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        with self._windows_lock:
            for window in self._windows.values():
                window["timer"].cancel()
            self._windows.clear()
        with self.wake:
            self.wake.notify_all()
        for ex in list(self.executors.values()):
            ex.thread.join(5)

    def on_event(self, event) -> None:
        if event.type in ("job.succeeded", "job.failed", "job.cancelled"):
            with self.wake:
                self.wake.notify_all()
        elif event.type == "project.applied" and self.pending and self.pending[0] is self.app.config:
            self.install(self.pending[1])
        self._match_triggers(event)

    # ------------------------------------------------------------------------------------------- schedules

    def install(self, project: spec.Project) -> None:
        """Switch to ``project``: add, change and remove schedules; catch up what a schedule missed."""
        with self.lock:
            self.project = project
            wanted = {f"pipeline:{n}": p.when for n, p in project.pipelines.items() if p.when}
            wanted |= {f"job:{n}": s.when for n, s in project.schedules.items()}
            for key in list(self.armed):
                if key not in wanted:
                    self.scheduler.remove_job(key)
                    del self.armed[key]
            # A schedule that is gone owes nothing: were it declared again, it must not catch up the time between.
            self.records.drop_schedule_states(keep=list(wanted))
            for key, when in wanted.items():
                if self.armed.get(key) != when.fingerprint():
                    self._arm(key, when)

    def _arm(self, key: str, when: spec.When) -> None:
        fp, now = when.fingerprint(), time.time()
        state = self.records.schedule_state(key)
        if state is None or state["fingerprint"] != fp:
            # A new or changed schedule owes nothing for the time before it existed.
            self.records.set_schedule_state(key, fp, now, now)
            state = self.records.schedule_state(key)
        self.armed[key] = fp
        self.fire(key, catching_up=True)
        state = self.records.schedule_state(key)
        trigger = make_trigger(when, state["anchor"])
        nxt = trigger.get_next_fire_time(_dt(state["last_fire"]), _dt(state["last_fire"]))
        self.scheduler.add_job(self.fire, trigger=trigger, args=[key], id=key, name=key, replace_existing=True,
                               next_run_time=nxt, misfire_grace_time=None, coalesce=True, max_instances=1)
        if state.get("paused"):
            self.scheduler.pause_job(key)

    def set_paused(self, key: str, paused: bool) -> None:
        """Pause a schedule (it fires nothing, across restarts too) or resume it from now: the times that passed
        while it was paused are not caught up."""
        with self.lock:
            state = self.records.schedule_state(key)
            if key not in self.armed or state is None:
                raise NotFound(f"no schedule {key.split(':', 1)[1]!r}; see /schedules")
            if bool(state.get("paused")) == paused:
                return
            self.records.set_paused(key, paused, state["last_fire"] if paused else max(time.time(), state["last_fire"]))
            if paused:
                self.scheduler.pause_job(key)
            else:
                kind, name = key.split(":", 1)
                target = (self.project.pipelines if kind == "pipeline" else self.project.schedules)[name]
                self._arm(key, target.when)
        self.app.events.emit(f"schedule.{'paused' if paused else 'resumed'}", subject=f"schedule:{key}",
                             data={"schedule": key})

    def fire(self, key: str, catching_up: bool = False) -> None:
        """A schedule's time has come (or the daemon just started): run once for every fire time since the last."""
        if self.app.stopping.is_set():
            return  # left unhandled on purpose: the next start catches it up
        with self.lock:
            state = self.records.schedule_state(key)
            kind, name = key.split(":", 1)
            target = (self.project.pipelines if kind == "pipeline" else self.project.schedules).get(name)
            if state is None or target is None or self.armed.get(key) != state["fingerprint"] or state.get("paused"):
                return
            when = target.when
            times = fire_times(make_trigger(when, state["anchor"]), state["last_fire"], time.time())
            if not times:
                return
            if catching_up:
                trigger, missed = "catchup", times
            elif len(times) > 1:
                trigger, missed = "catchup", times[:-1]
            else:
                trigger, missed = "schedule", []
            cause = ""
            if len(missed) > MAX_LISTED:
                cause = f"{len(missed)} scheduled times were missed; the first {MAX_LISTED} are listed"
                missed = missed[:MAX_LISTED]
            new_state = (key, state["fingerprint"], state["anchor"], times[-1])
            if kind == "pipeline":
                self.start_run(name, trigger, missed=missed, scheduled_for=times[-1], cause=cause,
                               schedule_state=new_state)
            else:
                self._fire_job(target, trigger, times[-1], missed, new_state)

    def _fire_job(self, sched: spec.JobSchedule, trigger: str, at: float, missed: list[float], state) -> None:
        self.records.set_schedule_state(*state)
        last = self.records.last_fire_job(sched.name)
        if last is not None and not sched.allow_overlap:
            try:
                job = self.app.jobs.get(last)
            except NotFound:  # pruned by retention: it finished long ago
                job = {"state": "succeeded"}
            if job["state"] not in ("succeeded", "failed", "cancelled"):
                self.records.record_fire(sched.name, trigger, at, missed, "skipped-overlap", last,
                                         f"job {last} from the previous fire is still {job['state']}")
                return
        try:
            job = self.app.jobs.submit(sched.kind, sched.params, retries=sched.retries, backoff_s=sched.backoff_s,
                                       timeout_s=sched.timeout_s, origin=f"schedule:{sched.name}")
        except Exception as exc:  # the kind's plugin may have gone; the fire is recorded, not lost
            self.records.record_fire(sched.name, trigger, at, missed, "failed-to-submit", None, str(exc))
            return
        self.records.record_fire(sched.name, trigger, at, missed, "submitted", job["id"])

    def next_fire(self, key: str) -> float | None:
        job = self.scheduler.get_job(key) if self.scheduler else None
        return job.next_run_time.timestamp() if job and job.next_run_time else None

    def last_fire(self, key: str) -> float | None:
        state = self.records.schedule_state(key)
        return state["last_fire"] if state else None

    # ------------------------------------------------------------------------------------------- runs

    def pipeline(self, name: str) -> spec.Pipeline:
        p = self.project.pipelines.get(name)
        if p is None:
            known = ", ".join(sorted(self.project.pipelines)) or "none"
            raise NotFound(f"no pipeline {name!r}; pipelines in the project: {known}")
        return p

    def start_run(self, name: str, trigger: str, *, missed: list[float] = (), scheduled_for: float | None = None,
                  cause: str = "", schedule_state=None) -> dict:
        """Start a run now, or record it as skipped when the pipeline is already running as often as allowed."""
        with self.lock:
            p = self.pipeline(name)
            active = self.records.active_runs(name)
            if p.max_overlap and len(active) >= p.max_overlap:
                why = f"overlap: run {active[-1]['id']} is still running"
                if trigger == "manual":
                    raise Conflict(f"pipeline {name!r} is already running (run {active[-1]['id']}); cancel it, "
                                   "or allow overlapping runs with max_overlap")
                run_id = self.records.create_run(p, trigger, status="skipped", reason=why, cause=cause,
                                                 missed=missed, scheduled_for=scheduled_for,
                                                 schedule_state=schedule_state)
                self.app.events.emit("pipeline.run_skipped", subject=f"pipeline:{name}",
                                     data={"pipeline": name, "run_id": run_id, "trigger": trigger, "reason": why})
                return self.records.run(run_id)
            run_id = self.records.create_run(p, trigger, missed=missed, scheduled_for=scheduled_for, cause=cause,
                                             schedule_state=schedule_state)
            self.app.events.emit("pipeline.run_started", subject=f"pipeline:{name}",
                                 data={"pipeline": name, "run_id": run_id, "trigger": trigger, "missed": list(missed)})
            self._launch(run_id, name, list(p.steps))
            return self.records.run(run_id)

    def _launch(self, run_id: int, name: str, steps: list[spec.Step]) -> RunExecutor:
        ex = RunExecutor(self.app, self.records, run_id, name, steps, self.wake, self._done)
        self.executors[run_id] = ex
        ex.start()
        return ex

    def _resume(self, run: dict) -> RunExecutor:
        return self._launch(run["id"], run["pipeline"],
                            [spec.Step.from_dict(s) for s in self.records.run_spec(run["id"])])

    def _done(self, ex: RunExecutor) -> None:
        self.executors.pop(ex.run_id, None)

    def cancel(self, name: str, run_id: int | None = None) -> list[dict]:
        active = [r for r in self.records.active_runs(name) if run_id is None or r["id"] == run_id]
        if not active:
            raise Conflict(f"pipeline {name!r} has no running run{f' {run_id}' if run_id else ''} to cancel")
        with self.lock:
            for run in active:
                # A run whose executor stopped on an error has none; a fresh one does the cancelling.
                ex = self.executors.get(run["id"]) or self._resume(run)
                ex.cancel()
        return [self.records.run(r["id"]) for r in active]

    # ------------------------------------------------------------------------------------------- events

    def _match_triggers(self, event) -> None:
        for p in list(self.project.pipelines.values()):
            for i, t in enumerate(p.triggers):
                if not fnmatch.fnmatchcase(event.type, t.event):
                    continue
                if t.subject is not None and not fnmatch.fnmatchcase(event.subject, t.subject):
                    continue
                self._debounce(p.name, i, t, event)

    def _debounce(self, name: str, index: int, trigger: spec.Trigger, event) -> None:
        """The first matching event opens a window of ``debounce_s``; the window's events start one run."""
        key = (name, index)
        with self._windows_lock:
            window = self._windows.get(key)
            if window is not None:
                window["count"] += 1
                return
            timer = threading.Timer(trigger.debounce_s, self._window_closed, [key, trigger])
            timer.daemon = True
            self._windows[key] = {"count": 1, "first": event.id, "timer": timer}
        timer.start()

    def _window_closed(self, key: tuple[str, int], trigger: spec.Trigger) -> None:
        with self._windows_lock:
            window = self._windows.pop(key, None)
        if window is None or self.app.stopping.is_set():
            return
        cause = f"{window['count']} event(s) matching {trigger.event!r}, first event {window['first']}"
        try:
            self.start_run(key[0], "event", cause=cause)
        except NotFound:
            pass  # the pipeline was removed by an apply while the window was open

