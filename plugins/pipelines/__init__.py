"""Pipelines and schedules: the box runs its own ingest, materialize, train and promote, and never silently
skips a run.

A pipeline is a named DAG of steps declared in ``appliance.toml`` (``[pipelines.NAME]``); each step is a job of
any registered kind, so retries, timeouts and the GPU gate are the job runner's. Pipelines run by hand, on
APScheduler schedules (cron or interval) or on events with a debounce window; ``[schedules.NAME]`` runs single
jobs on a schedule. Runs, their steps and each schedule's last fire live in the catalog (``records``), so
history, schedules and runs in flight survive a restart, and fire times missed while the daemon was down are
caught up by one run that lists them.
"""

from __future__ import annotations

from appliance import hookimpl

from . import api, cli, records
from .manager import Pipelines

APPLIANCE_CONTRACT = "1.0"

PIPELINES = Pipelines()


@hookimpl
def register_migrations(register):
    register(records.migrations)


@hookimpl
def register_routes(register):
    for route in api.routes(PIPELINES):
        register(route)


@hookimpl
def register_commands(register):
    register(cli.pipelines)
    register(cli.schedule)


@hookimpl
def configure(app, config):
    PIPELINES.configure(app, config)


@hookimpl
def startup(app):
    PIPELINES.startup(app)


@hookimpl
def shutdown(app):
    PIPELINES.shutdown()
