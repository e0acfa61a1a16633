"""Serving's control API routes and CLI commands (`appliance deployments ...`, `appliance feedback ...`)."""

from __future__ import annotations

import threading

import click

from appliance import ApplianceError, Reply, Route
from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table


def _state():
    from . import state

    if state.manager is None:
        raise ApplianceError("serving is not running", title="Serving stopped", status=503)
    return state


def _describe(dep, st) -> dict:
    out = dep.to_dict()
    m = dep.current
    if m is not None:
        key = (dep.name, str(m.version))
        h = st.metrics.latency.get(key)
        out["requests"] = st.metrics.success.get(key, 0)
        out["failures"] = sum(v for k, v in st.metrics.failure.items() if k[:2] == key)
        out["p50_ms"] = round(h.quantile(0.5) * 1000, 3) if h and h.count else None
        out["p99_ms"] = round(h.quantile(0.99) * 1000, 3) if h and h.count else None
    return out


def list_deployments(req):
    st = _state()
    return {"port": req.app.ports.get("serving"),
            "deployments": [_describe(d, st) for d in st.manager.deployments.values()]}


def show_deployment(req):
    st = _state()
    return _describe(st.manager.get(req.path_params["name"]), st)


def reload_deployment(req):
    st = _state()
    st.manager.reload(req.path_params["name"])
    st.manager.wait_idle()
    return _describe(st.manager.get(req.path_params["name"]), st)


def unload_deployment(req):
    st = _state()
    st.manager.unload(req.path_params["name"])
    st.manager.wait_idle()
    return Reply({"unloaded": req.path_params["name"]}, 200)


def recent_predictions(req):
    st = _state()
    st.predlog.flush()
    limit = req.int_query("limit", 50, minimum=1, maximum=10_000)
    sql = "select * from serving.prediction_log"
    args = []
    if req.query.get("deployment"):
        sql += " where deployment = ?"
        args.append(req.query["deployment"])
    sql += " order by ts desc limit ?"
    args.append(limit)
    cur = req.app.store.cursor()
    table_ = cur.execute(sql, args).to_arrow_table()
    return table_.to_pylist()


def post_feedback(req):
    """Labels for a logged prediction, behind the control API's token; answered once stored or refused."""
    from .feedback import max_labels, read_feedback
    from .protocol import ProtocolError

    st = _state()
    done, answer = threading.Event(), {}

    def answered(status: int, body: dict) -> None:
        answer.update(status=status, body=body)
        done.set()

    try:
        rid, labels = read_feedback(req.json(), max_labels(st.manager.deployments, st.feedback))
        st.feedback.submit(rid, labels, answered)
    except ProtocolError as exc:
        raise ApplianceError(exc.message, title="Feedback refused", status=exc.status) from None
    if not done.wait(60):
        raise ApplianceError("the labels were not stored within 60 s; the prediction log's writer is behind",
                             title="Feedback not stored", status=503)
    if answer["status"] != 200:
        raise ApplianceError(answer["body"]["error"], title="Feedback refused", status=answer["status"])
    return answer["body"]


def feedback_token(req):
    from .feedback import feedback_token

    return {"token": feedback_token(req.app.home.root)}


ROUTES = [
    Route("GET", "/deployments", list_deployments, "deployments, their versions, providers and latency"),
    Route("GET", "/deployments/{name}", show_deployment, "one deployment"),
    Route("POST", "/deployments/{name}/reload", reload_deployment, "load the deployment's target again"),
    Route("POST", "/deployments/{name}/unload", unload_deployment, "stop serving a deployment"),
    Route("GET", "/predictions", recent_predictions, "the prediction log, newest first"),
    Route("POST", "/feedback", post_feedback, "ground-truth labels for a logged prediction"),
    Route("GET", "/feedback/token", feedback_token, "the token that lets the serving port take feedback"),
]


@click.group(name="deployments", invoke_without_command=True)
@json_option
@click.pass_context
def deployments_cmd(ctx, as_json):
    """Deployments: what serves under which name, at which version, how fast."""
    if ctx.invoked_subcommand is not None:
        return
    data = connect(ctx).get("/deployments")
    if as_json:
        return emit_json(data)
    click.echo(f"serving on port {data['port']}")
    table([(d["name"], d["target"], d["state"], d["version"] or "-", d["provider"] or "-", d.get("requests", 0),
            d.get("p50_ms") or "-", d.get("p99_ms") or "-") for d in data["deployments"]],
          ["NAME", "TARGET", "STATE", "VERSION", "PROVIDER", "REQUESTS", "P50 MS", "P99 MS"])


@deployments_cmd.command("show")
@click.argument("name")
@json_option
@click.pass_context
def deployments_show(ctx, name, as_json):
    """One deployment in full."""
    d = connect(ctx).get(f"/deployments/{name}")
    if as_json:
        return emit_json(d)
    example = d.pop("example_request", None)
    inputs = d.pop("inputs", [])
    for key, value in d.items():
        click.echo(f"{key:>18}: {value}")
    if inputs:
        click.echo("\ninputs (in order):")
        table([(i["name"], i["datatype"], i["shape"], ", ".join(i.get("features") or []) or "-",
                "yes" if i.get("nullable") else "no") for i in inputs],
              ["INPUT", "TYPE", "SHAPE", "FEATURES (IN ORDER)", "TAKES NULL"])
    if example:
        import json

        port = connect(ctx).get("/deployments")["port"]
        click.echo(f"\nexample request (POST http://127.0.0.1:{port}/v2/models/{name}/infer):")
        click.echo(json.dumps(example))


@deployments_cmd.command("reload")
@click.argument("name")
@json_option
@click.pass_context
def deployments_reload(ctx, name, as_json):
    """Resolve the deployment's target again and swap in what it names now."""
    d = connect(ctx).post(f"/deployments/{name}/reload")
    if as_json:
        return emit_json(d)
    click.echo(f"{name}: {d['state']} version {d['version']}" + (f" ({d['error']})" if d["error"] else ""))


@click.group(name="feedback")
def feedback_cmd():
    """Ground truth for logged predictions: what monitoring measures performance with."""


@feedback_cmd.command("send")
@click.argument("request_id")
@click.argument("labels", nargs=-1, required=True, type=float)
@json_option
@click.pass_context
def feedback_send(ctx, request_id, labels, as_json):
    """Labels for the prediction answered with REQUEST_ID, one per row."""
    d = connect(ctx).post("/feedback", {"request_id": request_id, "labels": list(labels)})
    if as_json:
        return emit_json(d)
    click.echo(f"{d['request_id']}: {d['labels']} label(s) stored")


@feedback_cmd.command("token")
@click.pass_context
def feedback_token_cmd(ctx):
    """The token a client sends (Authorization: Bearer TOKEN) to post feedback to the serving port."""
    click.echo(connect(ctx).get("/feedback/token")["token"])


COMMANDS = [deployments_cmd, feedback_cmd]
