"""Ingestion and data validation: files into DuckDB under a data contract, exactly once per file.

Valid rows land in ``raw.NAME``, failing rows in ``quarantine.NAME`` with the reason, poisoned batches wait in
``staging`` for review, and the ledger (``ingest.batches``) holds every batch's file, content hash (BLAKE3) and time. See
``settings.py`` for the ``appliance.toml`` tables and ``engine.py`` for what one batch does.
"""

from __future__ import annotations

from appliance import JobKind, hookimpl

from .kinds import BUILTIN_KINDS
from .service import DataDirs, IngestBatches, service

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_sources(register):
    for kind in BUILTIN_KINDS:
        register(kind)


@hookimpl
def register_job_kinds(register):
    register(JobKind("ingest", service.run_job, description="Ingest a source's files (params: source, files)"))


@hookimpl
def register_routes(register):
    from .api import ROUTES

    for route in ROUTES:
        register(route)


@hookimpl
def register_commands(register):
    from .cli import COMMANDS

    for command in COMMANDS:
        register(command)


@hookimpl
def register_services(register):
    register(DataDirs(service))
    register(IngestBatches(service))


@hookimpl
def configure(app, config):
    service.configure(app, config)


@hookimpl
def startup(app):
    service.start(app)


@hookimpl
def shutdown(app):
    service.stop()
