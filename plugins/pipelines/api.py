"""Control API routes for pipelines and schedules (``/api/v1/pipelines...``, ``/api/v1/schedules``)."""

from __future__ import annotations

from appliance import BadRequest, NotFound, Reply, Route


def routes(pipelines) -> list[Route]:
    def summary(p) -> dict:
        key = f"pipeline:{p.name}"
        last = pipelines.records.last_run(p.name)
        return {**p.to_dict(), "next_fire": pipelines.next_fire(key) if p.when else None,
                "last_fire": pipelines.last_fire(key) if p.when else None,
                "running": [r["id"] for r in pipelines.records.active_runs(p.name)],
                "last_run": last}

    def list_pipelines(req) -> list:
        return [summary(p) for _, p in sorted(pipelines.project.pipelines.items())]

    def show(req) -> dict:
        p = pipelines.pipeline(req.path_params["name"])
        return {**summary(p), "runs": pipelines.records.runs(p.name, limit=10)}

    def runs(req) -> list:
        name = req.path_params["name"]
        found = pipelines.records.runs(name, limit=req.int_query("limit", 50, minimum=1, maximum=10_000),
                                       before=req.int_query("before"))
        if not found and name not in pipelines.project.pipelines:
            pipelines.pipeline(name)  # raises the NotFound that lists the pipelines there are
        return found

    def run_detail(req) -> dict:
        run = pipelines.records.run(req.int_param("id"))
        if run["pipeline"] != req.path_params["name"]:
            raise NotFound(f"run {run['id']} belongs to pipeline {run['pipeline']!r}, "
                           f"not {req.path_params['name']!r}")
        for step in run["steps"]:
            try:
                job = req.app.jobs.get(step["job_id"]) if step["job_id"] else None
            except NotFound:  # pruned by retention; the step keeps what it recorded of its job
                job = None
            step["job_state"] = job["state"] if job else None
            step["logs"] = [r["line"] for r in req.app.jobs.logs(step["job_id"], limit=100)] if job else []
        return run

    def start(req) -> Reply:
        if req.json_object():
            raise BadRequest("a run takes no fields; its steps and parameters come from appliance.toml")
        return Reply(pipelines.start_run(req.path_params["name"], "manual"), 202)

    def cancel(req) -> list:
        body = req.json_object()
        run_id = body.get("run_id")
        if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
            raise BadRequest(f"field 'run_id' must be a run id, got {run_id!r}")
        pipelines.pipeline(req.path_params["name"])
        return pipelines.cancel(req.path_params["name"], run_id)

    def paused(key: str) -> bool:
        return bool((pipelines.records.schedule_state(key) or {}).get("paused"))

    def schedules(req) -> list:
        out = []
        for name, p in sorted(pipelines.project.pipelines.items()):
            if p.when:
                key = f"pipeline:{name}"
                out.append({"name": name, "type": "pipeline", "target": name, "schedule": p.when.describe(),
                            "next_fire": pipelines.next_fire(key), "last_fire": pipelines.last_fire(key),
                            "paused": paused(key)})
        for name, s in sorted(pipelines.project.schedules.items()):
            key = f"job:{name}"
            out.append({"name": name, "type": "job", "target": s.kind, "schedule": s.when.describe(),
                        "next_fire": pipelines.next_fire(key), "last_fire": pipelines.last_fire(key),
                        "paused": paused(key), "fires": pipelines.records.fires(name, limit=10)})
        return out

    def pause_or_resume(pause: bool):
        def route(req) -> dict:
            body = req.json_object()
            kind = body.get("type") or ("pipeline" if req.path_params["name"] in pipelines.project.pipelines
                                        else "job")
            if kind not in ("pipeline", "job"):
                raise BadRequest(f"field 'type' must be 'pipeline' or 'job', got {kind!r}")
            key = f"{kind}:{req.path_params['name']}"
            pipelines.set_paused(key, pause)
            return {"name": req.path_params["name"], "type": kind, "paused": pause,
                    "next_fire": pipelines.next_fire(key)}
        return route

    return [
        Route("GET", "/pipelines", list_pipelines, "pipelines, with schedules and last runs"),
        Route("GET", "/pipelines/{name}", show, "one pipeline: steps, schedule, triggers, recent runs"),
        Route("GET", "/pipelines/{name}/runs", runs, "a pipeline's run history, newest first"),
        Route("GET", "/pipelines/{name}/runs/{id}", run_detail, "one run: each step's job, status, timing, logs"),
        Route("POST", "/pipelines/{name}/run", start, "start a run now"),
        Route("POST", "/pipelines/{name}/cancel", cancel, "cancel the pipeline's running run(s)"),
        Route("GET", "/schedules", schedules, "every schedule with its next fire time"),
        Route("POST", "/schedules/{name}/pause", pause_or_resume(True),
              "pause a schedule (it fires nothing until resumed, across restarts; body: optional type)"),
        Route("POST", "/schedules/{name}/resume", pause_or_resume(False),
              "resume a paused schedule from now (the times it missed are not caught up)"),
    ]
