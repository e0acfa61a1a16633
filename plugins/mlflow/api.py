"""MLflow's tracking REST API, the part its client's run logging calls, over the ``run_tracking`` service.

Identifiers are ours, as strings: a run's MLflow id is its run number, an experiment's its number (MLflow's
experiment "0" is the one called "Default"). Errors carry MLflow's ``error_code`` and ``message`` (which its
client shows) beside the appliance's own ``error`` object.
"""

from __future__ import annotations

import functools
import time

from appliance import ApplianceError, BadRequest, NotFound, Reply, Route, Stream

from . import entities

#: The largest file MLflow's client may upload, as for appliance.track's files (plugins/training/track_api.py).
ARTIFACT_MAX_BYTES = 1 << 30

API = "/mlflow/api/2.0/mlflow"
ARTIFACTS = "/mlflow/api/2.0/mlflow-artifacts/artifacts"
CODES = {400: "INVALID_PARAMETER_VALUE", 404: "RESOURCE_DOES_NOT_EXIST", 409: "INVALID_PARAMETER_VALUE",
         413: "INVALID_PARAMETER_VALUE"}
COVERED = ("mlflow.start_run, set_experiment, log_param(s), log_metric(s), log_batch, set_tag(s), "
           "log_artifact(s), end_run, get_run, get_metric_history, list/download artifacts")
#: What a user reaching past the covered part most likely called, to name it in the refusal.
HINTS = {"runs/search": "mlflow.search_runs", "experiments/search": "mlflow.search_experiments (with a filter)",
         "runs/delete": "mlflow.delete_run", "experiments/delete": "mlflow.delete_experiment",
         "registered-models": "the model registry (register ONNX files with `appliance models register`, or "
                              "appliance.track.log_model)", "model-versions": "the model registry",
         "logged-models": "mlflow.<flavor>.log_model (log an ONNX file with appliance.track.log_model)",
         "traces": "tracing", "runs/log-inputs": "mlflow.log_input (datasets)"}


def _service(req):
    return req.app.registry("services").get("run_tracking")


def mlflow_errors(handler):
    """Answer an ``ApplianceError`` the way MLflow's server does, so its client raises it with our words."""

    @functools.wraps(handler)
    def wrapped(req):
        try:
            return handler(req)
        except ApplianceError as exc:
            code = getattr(exc, "mlflow_code", None) or CODES.get(exc.status, "INTERNAL_ERROR")
            return Reply({"error_code": code, "message": exc.message, **exc.to_dict()}, exc.status)

    return wrapped


def _run_id(body: dict) -> int:
    raw = str(body.get("run_id") or body.get("run_uuid") or "")
    if not raw.isdigit():
        raise NotFound(f"no run {raw!r}: runs of this box have numbers as ids") if raw else \
            BadRequest("field 'run_id' is required")
    return int(raw)


# ----------------------------------------------------------------------------------------------- experiments


@mlflow_errors
def experiment_by_name(req) -> dict:
    name = req.query.get("experiment_name")
    if not name:
        raise BadRequest("query parameter 'experiment_name' is required")
    try:
        return {"experiment": entities.experiment(_service(req).experiment(name, create=False))}
    except NotFound:
        raise NotFound(f"Could not find experiment with name {name!r}") from None


@mlflow_errors
def get_experiment(req) -> dict:
    return {"experiment": entities.experiment(entities.find_experiment(_service(req), req.query.get("experiment_id")))}


@mlflow_errors
def create_experiment(req) -> dict:
    body = req.json_object()
    name = body.get("name")
    svc = _service(req)
    try:
        svc.experiment(name, create=False)
    except NotFound:
        return {"experiment_id": entities.experiment(svc.experiment(name))["experiment_id"]}
    err = BadRequest(f"Experiment {name!r} already exists.")
    err.mlflow_code = "RESOURCE_ALREADY_EXISTS"
    raise err


@mlflow_errors
def search_experiments(req) -> dict:
    body = req.json_object()
    if body.get("filter"):
        raise NotFound("searching experiments with a filter is not covered; list them all (no filter), or use "
                       "`appliance runs` and the dashboard")
    return {"experiments": [entities.experiment(e) for e in _service(req).experiments()]}


# ----------------------------------------------------------------------------------------------- runs


@mlflow_errors
def create_run(req) -> dict:
    body = req.json_object()
    svc = _service(req)
    exp = entities.find_experiment(svc, body.get("experiment_id") or "0")
    tags = entities.pairs(body.get("tags"), "tags")
    name = body.get("run_name") or tags.get("mlflow.runName") or "mlflow run"
    start = entities.number(body.get("start_time"), "start_time", int(time.time() * 1000)) / 1000
    run = svc.start(experiment=exp["name"], name=str(name), source="mlflow", tags=tags,
                    env=entities.environment(tags, body.get("user_id")), start_time=start)
    return {"run": entities.run(svc, run)}


@mlflow_errors
def get_run(req) -> dict:
    svc = _service(req)
    return {"run": entities.run(svc, svc.get(_run_id(req.query)))}


@mlflow_errors
def update_run(req) -> dict:
    body = req.json_object()
    svc, run_id = _service(req), _run_id(body)
    if body.get("run_name"):
        svc.rename(run_id, body["run_name"])
    status = body.get("status")
    if status == "RUNNING":
        svc.reopen(run_id)
    elif status:
        if status not in entities.STATES:
            raise BadRequest(f"status {status!r}: expected one of {', '.join(entities.STATES)}")
        end = entities.number(body.get("end_time"), "end_time", int(time.time() * 1000)) / 1000
        svc.end(run_id, entities.STATES[status], end_time=end)
    return {"run_info": entities.run(svc, svc.get(run_id))["info"]}


def _log(req, *, metrics=(), params=(), tags=()) -> dict:
    body = req.json_object()
    _service(req).log(_run_id(body), metrics=entities.metric_columns(metrics) if metrics else None,
                      params=entities.pairs(params, "params"), tags=entities.pairs(tags, "tags"))
    return {}


@mlflow_errors
def log_metric(req) -> dict:
    return _log(req, metrics=[req.json_object()])


@mlflow_errors
def log_param(req) -> dict:
    return _log(req, params=[req.json_object()])


@mlflow_errors
def set_tag(req) -> dict:
    return _log(req, tags=[req.json_object()])


@mlflow_errors
def log_batch(req) -> dict:
    body = req.json_object()
    return _log(req, metrics=body.get("metrics") or [], params=body.get("params") or [],
                tags=body.get("tags") or [])


@mlflow_errors
def metric_history(req) -> dict:
    q = req.query
    key = q.get("metric_key")
    if not key:
        raise BadRequest("query parameter 'metric_key' is required")
    offset = req.int_query("page_token", 0)
    limit = req.int_query("max_results", None, minimum=1)
    rows = _service(req).metric_history(_run_id(q), key, offset, limit if limit is not None else -1)
    out = {"metrics": [entities.metric(m) for m in rows]}
    if limit is not None and len(rows) == limit:
        out["next_page_token"] = str(offset + limit)
    return out


@mlflow_errors
def search_logged_models(req) -> dict:
    """MLflow 3 looks for a run's logged models when downloading its files; this box keeps none (it keeps ONNX
    files in its own registry), and says so."""
    req.json_object()
    return {"models": []}


# ----------------------------------------------------------------------------------------------- artifacts


def _artifact_place(path: str) -> tuple[int, str]:
    """``EXPERIMENT/RUN/artifacts[/PATH]`` (the run's artifact URI, as the client resolves it) to the run and
    the file's path within it."""
    parts = path.strip("/").split("/", 3)
    if len(parts) < 3 or not parts[1].isdigit() or parts[2] != "artifacts":
        raise NotFound(f"no artifact location {path!r}: this box's runs keep files under EXPERIMENT/RUN/artifacts")
    return int(parts[1]), parts[3] if len(parts) == 4 else ""


@mlflow_errors
def put_artifact(req) -> dict:
    run_id, path = _artifact_place(req.path_params["path"])
    _service(req).put_artifact(run_id, path, req.body)
    return {}


@mlflow_errors
def get_artifact(req):
    run_id, path = _artifact_place(req.path_params["path"])
    return Stream(iter([_service(req).artifact_bytes(run_id, path)]), media_type="application/octet-stream")


@mlflow_errors
def list_artifacts(req) -> dict:
    run_id, prefix = _artifact_place(req.query.get("path", ""))
    return {"files": entities.listing(_service(req).artifacts(run_id, prefix + "/" if prefix else ""), prefix)}


# ----------------------------------------------------------------------------------------------- the rest


@mlflow_errors
def not_covered(req):
    what = req.path_params["rest"]
    endpoint = what.split("mlflow/", 1)[-1]
    hint = next((f" ({h})" for k, h in HINTS.items() if endpoint.startswith(k)), "")
    err = NotFound(f"{req.method} /{what}{hint} is not part of MLflow's API as this box answers it: it covers "
                   f"what {COVERED} call. See the README's MLflow section")
    err.mlflow_code = "ENDPOINT_NOT_FOUND"
    raise err


ROUTES = [
    Route("GET", f"{API}/experiments/get-by-name", experiment_by_name, "MLflow: an experiment by name"),
    Route("GET", f"{API}/experiments/get", get_experiment, "MLflow: an experiment by id"),
    Route("POST", f"{API}/experiments/create", create_experiment, "MLflow: create an experiment"),
    Route("POST", f"{API}/experiments/search", search_experiments, "MLflow: every experiment (no filter)"),
    Route("POST", f"{API}/runs/create", create_run, "MLflow: start a run"),
    Route("GET", f"{API}/runs/get", get_run, "MLflow: a run with its latest metrics, params and tags"),
    Route("POST", f"{API}/runs/update", update_run, "MLflow: end (or rename, or reopen) a run"),
    Route("POST", f"{API}/runs/log-metric", log_metric, "MLflow: log one metric"),
    Route("POST", f"{API}/runs/log-parameter", log_param, "MLflow: log one parameter"),
    Route("POST", f"{API}/runs/set-tag", set_tag, "MLflow: set one tag"),
    Route("POST", f"{API}/runs/log-batch", log_batch, "MLflow: log metrics, params and tags at once"),
    Route("GET", f"{API}/metrics/get-history", metric_history, "MLflow: a metric's every value"),
    Route("POST", f"{API}/logged-models/search", search_logged_models, "MLflow: logged models (none here)"),
    Route("GET", ARTIFACTS, list_artifacts, "MLflow: list a run's files (?path=EXPERIMENT/RUN/artifacts/DIR)"),
    Route("PUT", f"{ARTIFACTS}/{{path:path}}", put_artifact, "MLflow: upload a run's file",
          max_body=ARTIFACT_MAX_BYTES),
    Route("GET", f"{ARTIFACTS}/{{path:path}}", get_artifact, "MLflow: download a run's file"),
    *(Route(method, "/mlflow/{rest:path}", not_covered, "MLflow: anything else is refused, by name")
      for method in ("GET", "POST", "PUT", "PATCH", "DELETE")),
]
