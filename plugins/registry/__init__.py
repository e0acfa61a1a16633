"""The model registry: versions linked to their runs and data, aliases, an audit log, a promotion gate.

Other plugins reach it as the ``model_registry`` service; people through ``appliance models`` and the API.
"""

from __future__ import annotations

from appliance import hookimpl

from . import api, cli, upload
from .store import ModelRegistry, check_gates, check_upload_limit, migrations

APPLIANCE_CONTRACT = "1.0"

REGISTRY = ModelRegistry()


@hookimpl
def register_migrations(register):
    register(migrations)


@hookimpl
def register_services(register):
    register(REGISTRY)


@hookimpl
def register_routes(register):
    for route in api.ROUTES:
        register(route)


@hookimpl
def register_commands(register):
    register(cli.models)


@hookimpl
def configure(app, config):
    gates = check_gates(config)
    limit = check_upload_limit(config, upload.DEFAULT_MAX_UPLOAD_MB)
    REGISTRY.app = app  # configure runs before startup and before any job or request
    REGISTRY.gates = gates
    REGISTRY.max_upload_bytes = limit
