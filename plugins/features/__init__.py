"""The feature store: feature views on DuckDB, point-in-time training sets, and an in-memory online store.

Views are declared in ``appliance.toml`` (see ``definitions``); ``materialize`` jobs keep each view version's
history in DuckDB (``offline``) and its newest values in memory (``online``); ``build_training_set`` jobs write
point-in-time correct Parquet snapshots to the artifact store (``pit``). Other plugins use the services
``online_features``, ``training_sets`` and ``feature_statistics``.
"""

from __future__ import annotations

import threading

from appliance import JobKind, hookimpl

from . import api, cli, records
from .store import FeatureIndexes, FeatureStatistics, FeatureStore, TrainingSets

APPLIANCE_CONTRACT = "1.0"

STORE = FeatureStore()
_loader: list[threading.Thread] = []


@hookimpl
def register_migrations(register):
    register(records.migrations)


@hookimpl
def register_job_kinds(register):
    # In-process: only the daemon may open store.duckdb. Both kinds are idempotent, so a retry is safe.
    register(JobKind("materialize", STORE.materialize, retries=1,
                     description="compute a feature view's new history and refresh its online values"))
    register(JobKind("build_training_set", STORE.build_training_set, retries=1,
                     description="build a point-in-time correct training set as a Parquet snapshot"))


@hookimpl
def register_routes(register):
    for route in api.routes(STORE):
        register(route)


@hookimpl
def register_commands(register):
    register(cli.features)
    register(cli.training_sets)


@hookimpl
def register_services(register):
    register(STORE.online)
    register(TrainingSets(STORE))
    register(FeatureStatistics(STORE))
    register(FeatureIndexes(STORE))


@hookimpl
def configure(app, config):
    STORE.configure(app, config)


@hookimpl
def startup(app):
    # The schema exists before any job runs: two materializations creating it at once conflict in DuckDB.
    from .offline import SCHEMA, fetch

    fetch(app.store.cursor(), f"create schema if not exists {SCHEMA}")
    # Online values live only in memory; reload them in the background so the daemon starts fast.
    thread = threading.Thread(target=STORE.load_online, name="features-online-load", daemon=True)
    _loader.append(thread)
    thread.start()


@hookimpl
def shutdown(app):
    for thread in _loader:
        thread.join(30)
