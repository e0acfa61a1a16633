"""The plugin's catalog tables: pipeline runs, their steps, single-job schedule fires, and schedule state.

Every state change is written here before its event goes out, so a daemon that stops at any point knows on
restart which runs were in flight (they resume) and when each schedule last fired (missed times are caught up).
"""

from __future__ import annotations

import json
import time

from appliance import Migrations, NotFound

migrations = Migrations("pipelines")

RUN_DONE = frozenset({"succeeded", "failed", "cancelled", "skipped"})
STEP_DONE = frozenset({"succeeded", "failed", "cancelled", "skipped"})


@migrations()
def m001_tables(db) -> None:
    db.execute("""
        create table pipeline_runs (
            id integer primary key autoincrement,
            pipeline text not null,
            trigger text not null,            -- manual | schedule | catchup | event
            status text not null,             -- running | succeeded | failed | cancelled | skipped
            cause text not null default '',   -- what started it, beyond the trigger (events, missed count)
            reason text not null default '',  -- why it was skipped, failed or cancelled
            missed text not null default '[]',-- scheduled times that passed without a run (epoch seconds)
            scheduled_for real,               -- the fire time this run is for, when a schedule started it
            spec text not null,               -- the steps as they were when the run started
            created real not null,
            started real,
            finished real
        )""")
    db.execute("create index pipeline_runs_by_name on pipeline_runs(pipeline, id)")
    db.execute("""
        create table pipeline_run_steps (
            run_id integer not null references pipeline_runs(id),
            step text not null,
            kind text not null,
            status text not null,             -- pending | running | succeeded | failed | cancelled | skipped
            job_id integer,
            attempts integer not null default 0,
            error text,
            started real,
            finished real,
            primary key (run_id, step)
        )""")
    db.execute("""
        create table schedule_state (
            name text primary key,            -- 'pipeline:NAME' or 'job:NAME'
            fingerprint text not null,        -- the schedule it fired for; a changed schedule starts afresh
            anchor real not null,             -- interval schedules fire at anchor + k * interval
            last_fire real not null           -- the latest fire time handled (run, skipped or caught up)
        )""")
    db.execute("""
        create table schedule_fires (
            id integer primary key autoincrement,
            schedule text not null,
            trigger text not null,            -- schedule | catchup
            fire_time real not null,
            missed text not null default '[]',
            job_id integer,
            outcome text not null,            -- submitted | skipped-overlap | failed-to-submit
            reason text not null default '',
            created real not null
        )""")
    db.execute("create index schedule_fires_by_name on schedule_fires(schedule, id)")


@migrations()
def m002_schedule_paused(db) -> None:
    # A paused schedule stays paused across restarts and fires nothing, not even to catch up.
    db.execute("alter table schedule_state add column paused integer not null default 0")


def run_row(row: dict) -> dict:
    out = dict(row)
    out["missed"] = json.loads(row["missed"])
    out.pop("spec", None)
    return out


class Records:
    """Reads and writes the tables through the daemon's per-thread catalog handle."""

    def __init__(self, app):
        self.app = app

    @property
    def db(self):
        return self.app.catalog.db

    # ------------------------------------------------------------------------------------------- runs

    def create_run(self, pipeline, trigger: str, *, status: str = "running", reason: str = "", cause: str = "",
                   missed: list[float] = (), scheduled_for: float | None = None, schedule_state=None) -> int:
        """Record a run (and its steps, pending); ``schedule_state`` is written in the same transaction, so a
        fire time is never marked handled without its run."""
        now = time.time()
        self.db.execute("begin immediate")
        try:
            cur = self.db.execute(
                "insert into pipeline_runs (pipeline, trigger, status, reason, cause, missed, scheduled_for, spec, "
                "created, started, finished) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [pipeline.name, trigger, status, reason, cause, json.dumps(list(missed)), scheduled_for,
                 json.dumps([s.to_dict() for s in pipeline.steps]), now,
                 now if status == "running" else None, None if status == "running" else now])
            run_id = cur.lastrowid
            if status == "running":
                for s in pipeline.steps:
                    self.db.execute("insert into pipeline_run_steps (run_id, step, kind, status) "
                                    "values (?, ?, ?, 'pending')", [run_id, s.name, s.kind])
            if schedule_state is not None:
                self.set_schedule_state(*schedule_state)
            self.db.execute("commit")
        except BaseException:
            self.db.execute("rollback")
            raise
        return run_id

    def finish_run(self, run_id: int, status: str, reason: str = "") -> bool:
        """Mark a running run finished; False if it already was (so its end is announced once)."""
        cur = self.db.execute("update pipeline_runs set status=?, reason=?, finished=? where id=? and "
                              "status='running'", [status, reason, time.time(), run_id])
        return cur.rowcount == 1

    def run(self, run_id: int) -> dict:
        rows = list(self.db.query("select * from pipeline_runs where id = ?", [int(run_id)]))
        if not rows:
            raise NotFound(f"no pipeline run {run_id}")
        out = run_row(rows[0])
        out["steps"] = self.steps(run_id)
        return out

    def run_spec(self, run_id: int) -> list[dict]:
        return json.loads(self.db.execute("select spec from pipeline_runs where id=?", [run_id]).fetchone()[0])

    def runs(self, pipeline: str | None = None, *, limit: int = 50, before: int | None = None) -> list[dict]:
        sql, args = "select * from pipeline_runs where 1=1", []
        if pipeline:
            sql += " and pipeline = ?"
            args.append(pipeline)
        if before:
            sql += " and id < ?"
            args.append(before)
        sql += " order by id desc limit ?"
        args.append(limit)
        return [run_row(r) for r in self.db.query(sql, args)]

    def active_runs(self, pipeline: str | None = None) -> list[dict]:
        sql, args = "select * from pipeline_runs where status = 'running'", []
        if pipeline:
            sql += " and pipeline = ?"
            args.append(pipeline)
        return [run_row(r) for r in self.db.query(sql + " order by id", args)]

    def last_run(self, pipeline: str) -> dict | None:
        rows = self.runs(pipeline, limit=1)
        return rows[0] if rows else None

    # ------------------------------------------------------------------------------------------- steps

    def steps(self, run_id: int) -> list[dict]:
        return list(self.db.query("select * from pipeline_run_steps where run_id = ? order by rowid", [run_id]))

    def update_step(self, run_id: int, step: str, **values) -> None:
        cols = ", ".join(f"{k}=?" for k in values)
        self.db.execute(f"update pipeline_run_steps set {cols} where run_id=? and step=?",
                        [*values.values(), run_id, step])

    # ------------------------------------------------------------------------------------------- schedules

    def schedule_state(self, name: str) -> dict | None:
        rows = list(self.db.query("select * from schedule_state where name = ?", [name]))
        return rows[0] if rows else None

    def set_schedule_state(self, name: str, fingerprint: str, anchor: float, last_fire: float) -> None:
        self.db.execute("insert into schedule_state (name, fingerprint, anchor, last_fire) values (?, ?, ?, ?) "
                        "on conflict(name) do update set fingerprint=excluded.fingerprint, "
                        "anchor=excluded.anchor, last_fire=excluded.last_fire",
                        [name, fingerprint, anchor, last_fire])

    def set_paused(self, name: str, paused: bool, last_fire: float) -> None:
        self.db.execute("update schedule_state set paused = ?, last_fire = ? where name = ?",
                        [int(paused), last_fire, name])

    def drop_schedule_states(self, keep: list[str]) -> None:
        marks = ", ".join("?" for _ in keep)
        self.db.execute(f"delete from schedule_state where name not in ({marks})" if keep else
                        "delete from schedule_state", keep)

    def record_fire(self, schedule: str, trigger: str, fire_time: float, missed: list[float], outcome: str,
                    job_id: int | None = None, reason: str = "") -> None:
        self.db.execute("insert into schedule_fires (schedule, trigger, fire_time, missed, job_id, outcome, "
                        "reason, created) values (?, ?, ?, ?, ?, ?, ?, ?)",
                        [schedule, trigger, fire_time, json.dumps(missed), job_id, outcome, reason, time.time()])

    def fires(self, schedule: str, limit: int = 50) -> list[dict]:
        rows = self.db.query("select * from schedule_fires where schedule = ? order by id desc limit ?",
                             [schedule, limit])
        return [{**r, "missed": json.loads(r["missed"])} for r in rows]

    def last_fire_job(self, schedule: str) -> int | None:
        row = self.db.execute("select job_id from schedule_fires where schedule=? and job_id is not null "
                              "order by id desc limit 1", [schedule]).fetchone()
        return row[0] if row else None
