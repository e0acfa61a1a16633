"""Backups: consistent snapshots of a running box, checked by hash, restored into an empty home.

``appliance backup`` queues a ``backup`` job (``snapshot``) that copies the catalog, exports the store and
copies the artifacts (reflinks where the filesystem allows, never hard links: ``copying``) into
``backups/<UTC timestamp>/`` (or ``--to DIR``) with a manifest of sha256 sums (``manifest``); ``backup verify``
and ``restore`` (``restore``, in part when some files fail) run in the shell without a daemon. A timer
(``schedule``) takes one every ``[backup] every_hours`` (24; 0 turns it off) and keeps the newest ``keep`` (7).
"""

from __future__ import annotations

from appliance import BadRequest, JobKind, hookimpl
from appliance.periodic import Periodic

from . import cli, schedule, snapshot

APPLIANCE_CONTRACT = "1.0"

DEFAULTS = {"every_hours": 24.0, "keep": 7}

#: The settings in effect: replaced as a whole by each ``configure`` that raised nothing.
SETTINGS: dict = dict(DEFAULTS)
_timer: list[Periodic] = []


def _run(job) -> dict:
    to = job.params.get("to")
    if to is not None and not isinstance(to, str):
        raise BadRequest(f"param 'to' must be a directory path, got {to!r}")
    result = snapshot.take(job.app, job, to)
    if to is None:
        result["pruned"] = snapshot.prune(job.app.home.backups_dir, SETTINGS["keep"])
    return result


@hookimpl
def register_migrations(register):
    register(schedule.migrations)


@hookimpl
def register_job_kinds(register):
    register(JobKind("backup", _run, description="a consistent snapshot of catalog, store and artifacts"))


@hookimpl
def register_commands(register):
    register(cli.backup)
    register(cli.restore)


@hookimpl
def configure(app, config):
    section = config.section("backup")
    new = dict(DEFAULTS)
    for key, value in section.items():
        if key not in DEFAULTS:
            raise config.error(f"unknown key; known keys: {', '.join(sorted(DEFAULTS))}", "backup", key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise config.error(f"expected a number, got {value!r}", "backup", key)
        new[key] = value
    if new["every_hours"] < 0:
        raise config.error(f"expected hours >= 0 (0 turns scheduled backups off), got {new['every_hours']}",
                           "backup", "every_hours")
    if not isinstance(new["keep"], int) or new["keep"] < 1:
        raise config.error(f"expected a whole number of backups >= 1, got {new['keep']!r}", "backup", "keep")
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
