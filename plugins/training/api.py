"""Control API routes for runs, sweeps and experiments, and the in-daemon steps that start runs."""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

from appliance import ApplianceError, BadRequest, Conflict, NotFound, Reply, Route

from . import spec as spec_mod
from . import tracking


def resolved_spec(app, name: str, overrides: dict) -> tuple[dict, object]:
    """The spec ``name`` of the running configuration, with ``--set`` overrides, checked."""
    if not isinstance(overrides, dict):
        raise BadRequest("field 'set' must be an object of KEY: VALUE overrides")
    trainers, project = app.registry("trainers"), app.config.project_dir
    raw = spec_mod.get(app.config, name)
    wanted = raw.get("trainer", spec_mod.DEFAULTS["trainer"]) if isinstance(raw, dict) else ""
    trainer = spec_mod.find_trainer(wanted, trainers, project) if isinstance(wanted, str) else None
    raw = spec_mod.apply_overrides(raw, overrides, trainer.hyperparameters if trainer else {},
                                   any_name=getattr(trainer, "open_hyperparameters", False))
    spec = spec_mod.resolve(name, raw, trainers, project)
    return spec, spec_mod.find_trainer(spec["trainer"], trainers, project)


def resolve_data(app, spec: dict) -> dict:
    """Where a run's rows come from: a feature-store training set, or a Parquet file snapshotted by hash."""
    if "training_set" in spec:
        service = app.registry("services").get("training_sets")
        if service is None:
            raise BadRequest(f"spec {spec['name']!r} names training set {spec['training_set']!r}, but no plugin "
                             "offers training sets (is the feature store loaded?); or name a parquet file")
        ts = service.get(spec["training_set"])
        return {"source": "training_set", "training_set": ts["id"], "path": str(ts["path"]),
                "manifest": ts["manifest"]}
    import pyarrow.parquet as pq

    path = Path(spec["parquet"])
    if not path.is_file():
        raise NotFound(f"spec {spec['name']!r}: no parquet file {path}")
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:
        raise BadRequest(f"spec {spec['name']!r}: {path} is not a readable Parquet file: {exc}") from None
    # The run trains on a copy in the artifact store: editing the file later cannot change what a run saw.
    digest = app.artifacts.put_file(path)
    return {"source": "parquet", "path": str(path), "sha256": digest,
            "manifest": {"path": str(path), "sha256": digest, "row_count": rows}}


def job_params(app, spec: dict, trainer, data: dict, run_id: int, resume: dict | None = None) -> dict:
    if isinstance(trainer, spec_mod.ProjectTrainer):  # a project file: imported in the child, never here
        target, module_file = f"{trainer.module}:{trainer.function}", trainer.path
    else:
        fit = trainer.fit
        target, module_file = f"{fit.__module__}:{fit.__qualname__}", None
        if fit.__module__.startswith("appliance_dropin_"):
            module_file = getattr(sys.modules.get(fit.__module__), "__file__", None)
    project = app.config.project_dir
    return {"run_id": run_id, "spec": spec, "data": {"path": data["path"], "sha256": data.get("sha256")},
            "project_dir": str(project) if project else None, "trainer": target,
            "trainer_module_file": module_file,
            "trainer_from_project": isinstance(trainer, spec_mod.ProjectTrainer), "resume": resume,
            "champion": champion(app, spec)}


def champion(app, spec: dict) -> dict | None:
    """The version the spec's alias holds now, for the run to score on its own holdout: the gate then
    compares the two on the same rows."""
    if not spec.get("alias") or not spec.get("model") or spec.get("gate", "better") == "none":
        return None
    registry = app.registry("services").get("model_registry")
    if registry is None:
        return None
    try:
        held = registry.resolve(spec["model"], spec["alias"])
    except ApplianceError:  # no holder yet (the first version always promotes), or its file is damaged
        return None
    return {"version": held["version"], "onnx_sha256": held["onnx_sha256"], "signature": held["signature"]}


def compared_params(spec: dict) -> dict:
    keep = ("trainer", "task", "seed", "label", "features", "categorical", "device", "mixed_precision", "split")
    return {**{k: spec.get(k) for k in keep}, "hyperparameters": spec["hyperparameters"]}


def start_run(app, spec: dict, trainer, data: dict, sweep_id: int | None = None) -> dict:
    run_id = tracking.create_run(app, spec, data, compared_params(spec), sweep_id=sweep_id)
    try:
        job = app.jobs.submit("train", job_params(app, spec, trainer, data, run_id), origin=f"run:{run_id}")
    except Exception:
        app.catalog.db.execute("delete from training_runs where id = ?", [run_id])
        raise
    tracking.set_job(app, run_id, job["id"])
    return {"run_id": run_id, "job_id": job["id"]}


# ----------------------------------------------------------------------------------------------- handlers


def post_run(req) -> Reply:
    body = req.json_object()
    name = body.get("spec")
    if not isinstance(name, str) or not name:
        raise BadRequest("field 'spec' is required: the name of a [training.NAME] spec")
    spec, trainer = resolved_spec(req.app, name, body.get("set") or {})
    started = start_run(req.app, spec, trainer, resolve_data(req.app, spec))
    return Reply({**started, "run": tracking.get_run(req.app.catalog.db, started["run_id"])}, 202)


def run_spec_job(job) -> dict:
    """The ``train_spec`` job: one run of a ``[training.NAME]`` spec, as a pipeline step or a schedule would ask.

    The run itself is the GPU-gated ``train`` child job; this one starts it, mirrors its progress, and ends with
    its outcome, so a pipeline's next step (or a retry) sees whether the model was trained and registered.
    """
    app = job.app
    name = job.params.get("spec")
    if not isinstance(name, str) or not name:
        raise BadRequest("param 'spec' is required: the name of a [training.NAME] spec")
    spec, trainer = resolved_spec(app, name, job.params.get("set") or {})
    started = start_run(app, spec, trainer, resolve_data(app, spec))
    job.log(f"run {started['run_id']} started as job {started['job_id']}")
    while True:
        inner = app.jobs.wait(started["job_id"], timeout=0.5)
        if inner["state"] in ("succeeded", "failed", "cancelled"):
            break
        if job.cancelled:
            app.jobs.cancel(started["job_id"])
        job.progress(inner["progress"], inner["message"] or f"run {started['run_id']}: {inner['state']}")
    if inner["state"] != "succeeded":
        raise Conflict(f"run {started['run_id']} of spec {name!r} {inner['state']}: {inner['error'] or ''}".strip(),
                       title="Training failed")
    return {"run_id": started["run_id"], "train_job": started["job_id"], "result": inner["result"]}


def post_sweep(req) -> Reply:
    body = req.json_object()
    app = req.app
    spec, trainer = resolved_spec(app, str(body.get("spec") or ""), body.get("set") or {})
    if not spec["sweep"]:
        raise BadRequest(f"spec {spec['name']!r} has no [training.{spec['name']}.sweep] table")
    data = resolve_data(app, spec)  # once: every trial trains on the same snapshot
    db = app.catalog.db
    sweep_id = db.execute("insert into training_sweeps (spec_name, experiment_id, sweep, created) values "
                          "(?, ?, ?, ?)", [spec["name"], tracking.experiment_id(db, spec["experiment"]),
                                           json.dumps(spec["sweep"]), time.time()]).lastrowid
    runs = []
    for n, trial in enumerate(spec_mod.trials(spec["sweep"]), 1):
        trial_spec = copy.deepcopy(spec)
        trial_spec["hyperparameters"].update(trial)
        # Trials are candidates, not releases: none is registered; rerun the best with its values to ship it.
        trial_spec.update(model=False, alias=None, tags={**spec["tags"], "sweep": str(sweep_id), "trial": str(n)})
        runs.append(start_run(app, trial_spec, trainer, data, sweep_id=sweep_id))
    return Reply({"sweep_id": sweep_id, "runs": runs}, 202)


def get_sweep(req) -> dict:
    db = req.app.catalog.db
    sweep_id = req.int_param("id")
    rows = list(db.query("select * from training_sweeps where id = ?", [sweep_id]))
    if not rows:
        raise NotFound(f"no sweep {sweep_id}")
    sweep = json.loads(rows[0]["sweep"])
    metric, goal = sweep["metric"], sweep["goal"]
    agg = "min" if goal == "min" else "max"
    runs = []
    for run in tracking.list_runs(db, sweep=sweep_id, limit=10_000):
        value = db.execute(f"select {agg}(value) from training_metrics where run_id = ? and key = ?",
                           [run["id"], metric]).fetchone()[0]
        runs.append({"run_id": run["id"], "state": run["state"], "hyperparameters": run["params"]["hyperparameters"],
                     metric: value})
    scored = [r for r in runs if r["state"] == "succeeded" and r[metric] is not None]
    best = (min if goal == "min" else max)(scored, key=lambda r: r[metric]) if scored else None
    done = all(r["state"] in ("succeeded", "failed", "cancelled") for r in runs)
    return {"id": sweep_id, "spec": rows[0]["spec_name"], "method": sweep["method"], "metric": metric,
            "goal": goal, "parameters": list(sweep["parameters"]), "done": done,
            "runs": sorted(runs, key=lambda r: r["run_id"]), "best": best}


def list_runs(req) -> list:
    q = req.query
    return tracking.list_runs(req.app.catalog.db, experiment=q.get("experiment") or None, spec=q.get("spec") or None,
                              state=q.get("state") or None, sweep=req.int_query("sweep"),
                              limit=req.int_query("limit", 100, minimum=1, maximum=10_000))


def get_run(req) -> dict:
    return tracking.get_run(req.app.catalog.db, req.int_param("id"))


def run_metrics(req) -> list:
    return tracking.metric_series(req.app.catalog.db, req.int_param("id"), req.query.get("key") or None,
                                  req.int_query("after", -1, minimum=-1),
                                  req.int_query("limit", 10_000, minimum=1, maximum=1_000_000))


def compare_runs(req) -> dict:
    a, b = req.int_query("a"), req.int_query("b")
    if a is None or b is None:
        raise BadRequest("query parameters 'a' and 'b' (run ids) are required")
    return tracking.compare(req.app.catalog.db, a, b)


def resume_run(req) -> Reply:
    app, run_id = req.app, req.int_param("id")
    db = app.catalog.db
    run = tracking.get_run(db, run_id)
    if run["state"] not in ("failed", "cancelled"):
        raise Conflict(f"run {run_id} is {run['state']}; only a failed or cancelled run can be resumed")
    if "source" in run["spec"]:
        raise Conflict(f"run {run_id} was tracked from outside ({run['spec']['source']}); only a training spec's "
                       "run can be resumed here. Start a new run from your code")
    try:
        trainer = spec_mod.find_trainer(run["spec"]["trainer"], app.registry("trainers"), app.config.project_dir)
    except spec_mod.SpecError as exc:
        raise NotFound(f"trainer of run {run_id}: {exc.message}") from None
    if trainer is None:
        raise NotFound(f"trainer {run['spec']['trainer']!r} of run {run_id} is not registered any more")
    last = db.execute("select sha256, epoch, step from training_artifacts where run_id = ? and kind = 'checkpoint' "
                      "order by epoch desc limit 1", [run_id]).fetchone()
    resume = {"checkpoint": last[0], "epoch": last[1], "step": last[2]} if last else None
    job = app.jobs.submit("train", job_params(app, run["spec"], trainer, run["data"], run_id, resume),
                          origin=f"run:{run_id}:resume")
    tracking.set_job(app, run_id, job["id"])
    return Reply({"run_id": run_id, "job_id": job["id"], "resume": resume}, 202)


def delete_run(req) -> dict:
    """Delete a finished run. Its metrics and artifact rows go at the next retention prune (a run of 100k
    metrics would hold the catalog's write lock for seconds here); a run a registered version names stays."""
    app, run_id = req.app, req.int_param("id")
    db = app.catalog.db
    with tracking.transaction(db):
        run = tracking.get_run(db, run_id)
        if run["state"] in ("queued", "running"):
            raise Conflict(f"run {run_id} is {run['state']}; cancel its job first (appliance jobs cancel "
                           f"{run['job_id']})")
        registry = app.registry("services").get("model_registry")
        named = registry.versions_of_run(run_id) if registry is not None else []
        if named:
            raise Conflict(f"run {run_id} trained {', '.join(f'{n} version {v}' for n, v in named)}: a registered "
                           "version's lineage needs it", title="Run kept")
        db.execute("delete from training_runs where id = ?", [run_id])
    app.events.emit("run.deleted", subject=f"run:{run_id}", data={"run_id": run_id, "spec": run["spec_name"]})
    return {"deleted": run_id}


def tag_run(req) -> dict:
    tags = req.json_object()
    if not all(isinstance(v, str) for v in tags.values()):
        raise BadRequest("tags are an object of string values")
    db = req.app.catalog.db
    run = tracking.get_run(db, req.int_param("id"))
    db.execute("update training_runs set tags = ? where id = ?", [json.dumps({**run["tags"], **tags}), run["id"]])
    return tracking.get_run(db, run["id"])


def list_experiments(req) -> list:
    return list(req.app.catalog.db.query(
        "select e.id, e.name, e.created, count(r.id) runs, max(r.created) last_run from training_experiments e "
        "left join training_runs r on r.experiment_id = e.id group by e.id order by e.name"))


def list_specs(req) -> list:
    app = req.app
    out = []
    for name in sorted(spec_mod.specs(app.config)):
        spec, _ = resolved_spec(app, name, {})
        out.append({"name": name, "trainer": spec["trainer"], "task": spec["task"], "label": spec["label"],
                    "model": spec["model"], "sweep": bool(spec["sweep"]),
                    "data": spec.get("training_set") or spec.get("parquet")})
    return out


def list_trainers(req) -> list:
    reg = req.app.registry("trainers")
    return [{"name": n, "plugin": reg.owner(n), "tasks": list(t.tasks), "hyperparameters": t.hyperparameters,
             "description": t.description} for n, t in reg.items()]


ROUTES = [
    Route("GET", "/experiments", list_experiments, "experiments and their run counts"),
    Route("GET", "/training/specs", list_specs, "the project's training specs"),
    Route("GET", "/training/trainers", list_trainers, "registered trainers"),
    Route("POST", "/runs", post_run, "start a run of a training spec (body: spec, set)"),
    Route("GET", "/runs", list_runs, "runs, newest first"),
    Route("GET", "/runs/compare", compare_runs, "what differs between runs a and b"),
    Route("GET", "/runs/{id}", get_run, "one run: params, metrics, environment, artifacts"),
    Route("GET", "/runs/{id}/metrics", run_metrics, "a run's metric series"),
    Route("POST", "/runs/{id}/resume", resume_run, "resume a failed or cancelled run from its last checkpoint"),
    Route("POST", "/runs/{id}/tags", tag_run, "set tags on a run"),
    Route("DELETE", "/runs/{id}", delete_run, "delete a finished run (its metrics go at the next prune)"),
    Route("POST", "/sweeps", post_sweep, "start a sweep of a training spec"),
    Route("GET", "/sweeps/{id}", get_sweep, "a sweep's runs and the best of them"),
]
