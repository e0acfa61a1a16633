"""Control API routes: monitors, their runs, alerts, ad-hoc drift, and the Prometheus page."""

from __future__ import annotations

import asyncio

from appliance import BadRequest, NotFound, Options, Reply, Route, Stream

from . import data, metrics
from .context import MonitorContext


def routes(monitors, sinks) -> list[Route]:
    def list_monitors(req) -> dict:
        kinds = req.app.registry("monitors")
        return {"monitors": [monitors.summary(s) for _, s in sorted(monitors.specs.items())],
                "kinds": [{"name": n, "description": getattr(k, "description", ""), "plugin": kinds.owner(n),
                           "options": Options.of(k.options).to_list()} for n, k in sorted(kinds.items())]}

    def list_sinks(req) -> dict:
        kinds = req.app.registry("alert_sinks")
        return {"sinks": sinks.list(),
                "kinds": [{"name": n, "description": getattr(k, "description", ""), "plugin": kinds.owner(n),
                           "options": Options.of(getattr(k, "options", None)).to_list()}
                          for n, k in sorted(kinds.items())]}

    def show(req) -> dict:
        spec = monitors.spec(req.path_params["name"])
        return {**monitors.summary(spec), "runs": monitors.runs(spec.name, req.int_query("limit", 10, minimum=1,
                                                                                          maximum=1000))}

    def run(req) -> Reply:
        if req.json_object():
            raise BadRequest("a monitor run takes no fields; its options come from appliance.toml")
        return Reply(monitors.submit(req.path_params["name"]), 202)

    def list_alerts(req) -> list:
        return monitors.alerts.list(req.query.get("state", "active"),
                                    req.int_query("limit", 100, minimum=1, maximum=10_000), req.query.get("rule"))

    def show_alert(req) -> dict:
        return monitors.alerts.get(req.int_param("id"))

    def ack(req) -> dict:
        body = req.json_object()
        for key in body:
            if key not in ("by", "note"):
                raise BadRequest(f"unknown field {key!r}; an acknowledgement takes 'by' and 'note'")
        for key in ("by", "note"):
            if not isinstance(body.get(key, ""), str):
                raise BadRequest(f"field {key!r} must be a string")
        return monitors.alerts.ack(req.int_param("id"), body.get("by", ""), body.get("note", ""))

    def drift_now(req) -> dict:
        """Drift of a model's (or deployment's) latest window against its reference, now, without alerts."""
        target = req.path_params["model"]
        deployment = _deployment_of(req.app, target)
        kind = req.app.registry("monitors").get("drift")
        options = dict(kind.options)
        options.update(deployment=deployment, window_s=float(req.int_query("window_s", 86400, minimum=1)),
                       min_rows=req.int_query("min_rows", 30, minimum=1))
        if req.query.get("reference"):
            options["reference"] = req.query["reference"]
        ctx = MonitorContext(req.app, f"drift:{deployment}", "drift", options)  # no checks become alerts here
        kind.run(ctx)
        return {"model": target, "deployment": deployment, "status": ctx.status, **ctx.details}

    async def prometheus(req) -> Stream:
        async def chunks():
            yield await asyncio.to_thread(metrics.render, req.app.registry("metrics_collectors"))

        return Stream(chunks(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return [
        Route("GET", "/monitors", list_monitors, "monitors with their last run, and the registered kinds"),
        Route("GET", "/monitors/{name}", show, "one monitor with its recent runs"),
        Route("POST", "/monitors/{name}/run", run, "run a monitor now (a monitor job)"),
        Route("GET", "/alerts", list_alerts, "alerts (?state=active|open|acked|resolved|all, ?rule=)"),
        Route("GET", "/alerts/{id}", show_alert, "one alert"),
        Route("POST", "/alerts/{id}/ack", ack, "acknowledge an alert ({\"by\", \"note\"})"),
        Route("GET", "/drift/{model}", drift_now, "drift of a model's latest window against its reference"),
        Route("GET", "/metrics", prometheus, "every registered metrics collector, in Prometheus text format"),
        Route("GET", "/alert-sinks", list_sinks, "configured alert sinks with their deliveries, and the kinds"),
    ]


def _deployment_of(app, target: str) -> str:
    """``target`` names a deployment, or a model one deployment serves (the most recently logged one)."""
    cur = app.store.cursor()
    if not data.has_log(cur):
        raise NotFound("there is no prediction log yet: nothing has been served")
    rows = cur.execute(f"select deployment from {data.PREDICTIONS} where deployment = ? or model = ? "
                       "order by (deployment = ?) desc, ts desc limit 1", [target, target, target]).fetchall()
    if not rows:
        raise NotFound(f"no deployment or model {target!r} in the prediction log")
    return rows[0][0]
