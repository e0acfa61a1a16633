"""MLflow's client, unchanged: the part of MLflow's tracking REST API that ``mlflow.start_run``, ``log_param(s)``,
``log_metric(s)``, ``log_batch``, ``set_tag(s)``, ``log_artifact(s)`` and ``end_run`` call, answered under
``/api/v1/mlflow`` with the home's token as the bearer.

    export MLFLOW_TRACKING_URI=http://127.0.0.1:7870/api/v1/mlflow
    export MLFLOW_TRACKING_TOKEN=$(cat ~/.local/share/appliance/token)

Runs logged this way are ordinary runs (the training plugin's ``run_tracking`` service keeps them), so
``appliance runs``, ``runs compare`` and the dashboard show them. A call outside the covered part is answered
404 ``ENDPOINT_NOT_FOUND`` naming it and what is covered.
"""

from __future__ import annotations

from appliance import hookimpl

from . import api

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_routes(register):
    for route in api.ROUTES:
        register(route)
