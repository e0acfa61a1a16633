"""Retention: what the box piles up, pruned by age; disk use per area.

A ``retention`` job (``prune``) runs every ``[retention] every_hours`` (24; 0 turns the schedule off) and
deletes what is older than its ``*_days``: prediction logs, events, job logs, finished jobs, per-epoch
checkpoints of finished runs (but each run's ``checkpoints_keep``), monitor runs, feature-view index files no
current view reads, unreferenced artifacts; and the metrics of deleted runs. Nothing a registered model version's
lineage needs goes. ``GET /disk`` and ``appliance disk`` (``disk``) show where the space goes.
"""

from __future__ import annotations

from appliance import JobKind, Route, hookimpl
from appliance.periodic import Periodic

from . import cli, disk, prune, schedule

APPLIANCE_CONTRACT = "1.0"

DEFAULTS = {"every_hours": 24.0, "predictions_days": 30.0, "events_days": 90.0, "job_logs_days": 30.0,
            "orphan_artifacts_days": 7.0, "jobs_days": 30.0, "checkpoints_days": 7.0,
            "checkpoints_keep": ["best", "last"], "monitor_runs_days": 30.0, "feature_indexes_days": 7.0}
CHECKPOINTS = ("best", "last")

#: The settings in effect: replaced as a whole by each ``configure`` that raised nothing.
SETTINGS: dict = dict(DEFAULTS)
_timer: list[Periodic] = []


def _run(job) -> dict:
    return prune.run(job.app, job, SETTINGS)


@hookimpl
def register_migrations(register):
    register(schedule.migrations)


@hookimpl
def register_job_kinds(register):
    register(JobKind("retention", _run, description="prune prediction logs, events, jobs and their logs, "
                                                    "checkpoints, monitor runs, feature indexes and unreferenced "
                                                    "artifacts past their age"))


@hookimpl
def register_routes(register):
    register(Route("GET", "/disk", lambda request: disk.usage(request.app), "disk use per area of the home"))


@hookimpl
def register_commands(register):
    register(cli.disk)


@hookimpl
def configure(app, config):
    new = dict(DEFAULTS)
    for key, value in config.section("retention").items():
        if key not in DEFAULTS:
            raise config.error(f"unknown key; known keys: {', '.join(sorted(DEFAULTS))}", "retention", key)
        if key == "checkpoints_keep":
            if not isinstance(value, list) or set(value) - set(CHECKPOINTS):
                raise config.error(f"expected a list of {' and '.join(map(repr, CHECKPOINTS))} (or [] to keep "
                                   f"none), got {value!r}", "retention", key)
            new[key] = list(value)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise config.error(f"expected a number, got {value!r}", "retention", key)
        if key == "every_hours" and value < 0:
            raise config.error(f"expected hours >= 0 (0 turns the daily run off), got {value}", "retention", key)
        if key != "every_hours" and value <= 0:
            raise config.error(f"expected a number of days > 0, got {value}", "retention", key)
        new[key] = float(value)
    SETTINGS.clear()
    SETTINGS.update(new)


@hookimpl
def startup(app):
    timer = schedule.timer(app, SETTINGS)
    timer.start()
    _timer.append(timer)


@hookimpl
def shutdown(app):
    while _timer:
        _timer.pop().stop()
