"""Serving's control API routes and CLI commands (`appliance deployments ...`, `appliance feedback ...`)."""

from __future__ import annotations

import sys
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


def _features(req):
    return req.app.registry("services").get("online_features")


def _describe(dep, st, features=None) -> dict:
    out = dep.to_dict()
    m = dep.current
    if m is not None and dep.spec.entity_keys and out.get("example_request"):
        # What this deployment takes: the entity keys typed as the online store holds them (an INT64 card id,
        # not a string) and the features sent beside them, as its metadata lists them.
        from .online import metadata

        out["example_request"]["inputs"] = [
            {"name": i["name"], "datatype": i["datatype"], "shape": [1], "data": ["KEY" if i["datatype"] == "BYTES"
                                                                                 else 0]}
            for i in metadata(dep.spec, m, features)["inputs"]]
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
            "deployments": [_describe(d, st, _features(req)) for d in st.manager.deployments.values()]}


def show_deployment(req):
    st = _state()
    return _describe(st.manager.get(req.path_params["name"]), st, _features(req))


def reload_deployment(req):
    st = _state()
    st.manager.reload(req.path_params["name"])
    st.manager.wait_idle()
    return _describe(st.manager.get(req.path_params["name"]), st, _features(req))


def unload_deployment(req):
    st = _state()
    st.manager.unload(req.path_params["name"])
    st.manager.wait_idle()
    return Reply({"unloaded": req.path_params["name"]}, 200)


def shadow_report(req):
    from .shadow import request

    return request(req)


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


def post_feedback_many(req):
    """Labels for many logged predictions at once (``{"items": [{"request_id", "labels"}, ...]}``): queued
    together, so they are stored in one writer cycle instead of a quarter second each. Each item is stored or
    refused on its own; the answer lists the refused ones with why."""
    from .feedback import max_labels, read_feedback
    from .protocol import ProtocolError

    st = _state()
    body = req.json_object()
    items = body.get("items")
    if not isinstance(items, list) or not items or len(items) > MAX_FEEDBACK_ITEMS:
        raise ApplianceError(f"give 'items': a list of 1 to {MAX_FEEDBACK_ITEMS} {{request_id, labels}} objects",
                             title="Feedback refused", status=400)
    limit = max_labels(st.manager.deployments, st.feedback)
    answers: list[dict | None] = [None] * len(items)
    refused, parsed = [], []
    for i, item in enumerate(items):
        try:
            parsed.append((i, *read_feedback(item, limit)))
        except ProtocolError as exc:
            rid = item.get("request_id") if isinstance(item, dict) else None
            refused.append({"index": i, "request_id": rid, "status": exc.status, "error": exc.message})
    if sum(len(labels) for _, _, labels in parsed) > st.feedback.max_pending:
        raise ApplianceError(f"the items give more labels than the queue holds ({st.feedback.max_pending}); send "
                             "fewer at once", title="Feedback refused", status=413)
    done = threading.Semaphore(0)

    def answered(i: int):
        def store(status: int, body: dict) -> None:
            answers[i] = {"status": status, "body": body}
            done.release()
        return store

    queued = 0
    for i, rid, labels in parsed:
        try:
            st.feedback.submit(rid, labels, answered(i))
            queued += 1
        except ProtocolError as exc:
            refused.append({"index": i, "request_id": rid, "status": exc.status, "error": exc.message})
    for _ in range(queued):
        if not done.acquire(timeout=60):
            raise ApplianceError("the labels were not stored within 60 s; the prediction log's writer is behind",
                                 title="Feedback not stored", status=503)
    stored = 0
    for i, rid, _ in parsed:
        a = answers[i]
        if a is None:
            continue
        if a["status"] == 200:
            stored += a["body"]["labels"]
        else:
            refused.append({"index": i, "request_id": rid, "status": a["status"], "error": a["body"]["error"]})
    return {"stored_labels": stored, "items": len(items), "refused": sorted(refused, key=lambda r: r["index"])}


#: Feedback items one batch request may carry (the CLI sends a file in batches of this many).
MAX_FEEDBACK_ITEMS = 10_000


def feedback_token(req):
    from .feedback import feedback_token

    return {"token": feedback_token(req.app.home.root)}


ROUTES = [
    Route("GET", "/deployments", list_deployments, "deployments, their versions, providers and latency"),
    Route("GET", "/deployments/{name}", show_deployment, "one deployment"),
    Route("POST", "/deployments/{name}/reload", reload_deployment, "load the deployment's target again"),
    Route("POST", "/deployments/{name}/unload", unload_deployment, "stop serving a deployment"),
    Route("GET", "/deployments/{name}/shadow", shadow_report, "the deployment against its shadow on the same "
          "requests: agreement, score distributions, realized metrics once labels arrive, and the winner (query: "
          "window_s, output, threshold, task, min_rows)"),
    Route("GET", "/predictions", recent_predictions, "the prediction log, newest first"),
    Route("POST", "/feedback", post_feedback, "ground-truth labels for a logged prediction"),
    Route("POST", "/feedback/batch", post_feedback_many, "labels for many logged predictions at once"),
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
        click.echo(f"\nexample request (POST http://127.0.0.1:{port}/v2/models/{name}/infer, content-type "
                   "application/json; a null is a missing value where TAKES NULL says yes):")
        click.echo(json.dumps(example))


@deployments_cmd.command("shadow")
@click.argument("name")
@click.option("--window", "window_s", type=float, help="Seconds of traffic to compare (default: a day).")
@click.option("--output", help="The output compared, NAME or NAME[i] (default: the champion's first, its "
                               "positive class for two columns).")
@click.option("--threshold", type=float, help="Where a score becomes a positive decision (0.5).")
@json_option
@click.pass_context
def deployments_shadow(ctx, name, window_s, output, threshold, as_json):
    """Deployment NAME against its shadow, on the same requests: agreement, score distributions and, once labels
    arrive, both models' realized metrics; names the winner by the promotion gate and how to promote it."""
    r = connect(ctx).get(f"/deployments/{name}/shadow", window_s=window_s, output=output, threshold=threshold)
    if as_json:
        return emit_json(r)
    for line in shadow_lines(r):
        click.echo(line)


def shadow_lines(r: dict) -> list[str]:
    c, h = r["champion"], r["challenger"]
    out = [f"{r['deployment']} ({c['model']} version {c['version']}) against its shadow {r['shadow']} "
           f"({h['model']} version {h['version']}), last {r['window_s']:g} s, output {r['output']}"]
    if not r["pairs"]:
        return [*out, "no request answered by both yet"]
    out.append(f"{r['pairs']} request(s) answered by both: they decide alike on {r['agreement']:.1%} (at "
               f"{r['threshold']:g}), mean |difference| {r['mean_abs_difference']:.4g}")
    buf = [("scores", "CHAMPION", "CHALLENGER")]
    buf += [(k, f"{c['scores'][k]:.4g}", f"{h['scores'][k]:.4g}") for k in ("mean", "std", "p10", "p50", "p90")]
    out += _rows(buf)
    if r["labeled"] and c.get("metrics"):
        out.append(f"labels on {r['labeled']} of them ({r['task']}):")
        out += _rows([("METRIC", "CHAMPION", "CHALLENGER")] + [
            (k, _figure(v), _figure(h["metrics"].get(k))) for k, v in c["metrics"].items()])
    out.append(r["verdict"])
    if r["promote"]:
        out.append(f"promote it: {r['promote']}")
    return out


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _rows(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


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


class _FeedbackGroup(click.Group):
    """``appliance feedback FILE`` reads as ``appliance feedback file FILE``: a file is the common case."""

    def parse_args(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["file", *args]
        return super().parse_args(ctx, args)


@click.group(name="feedback", cls=_FeedbackGroup)
def feedback_cmd():
    """Ground truth for logged predictions: what monitoring measures performance with.

    \b
    appliance feedback FILE          labels from a CSV or Parquet file (request_id, label[, row_index])
    appliance feedback send ID 1     labels for one request, one per row it logged
    appliance feedback token         the token for POST /v2/feedback on the serving port
    """


@feedback_cmd.command("file", hidden=True)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
@click.pass_context
def feedback_file(ctx, path, as_json):
    """Labels from a CSV or Parquet file: columns request_id and label (and row_index for requests of several
    rows). Every request id must be one a prediction answered with; the ones no logged prediction has are listed
    and the command exits 1."""
    from .feedback_file import read_file

    try:
        items = read_file(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    c = connect(ctx)
    stored, refused = 0, []
    for start in range(0, len(items), MAX_FEEDBACK_ITEMS):
        chunk = items[start:start + MAX_FEEDBACK_ITEMS]
        r = c.post("/feedback/batch", {"items": chunk})
        stored += r["stored_labels"]
        refused += [{**x, "index": x["index"] + start} for x in r["refused"]]
    if as_json:
        emit_json({"stored_labels": stored, "requests": len(items), "refused": refused})
    else:
        click.echo(f"{path}: {stored} label(s) stored for {len(items) - len(refused)} of {len(items)} request(s)")
        for x in refused[:20]:
            click.echo(f"  refused {x['request_id']!r}: {x['error']}")
        if len(refused) > 20:
            click.echo(f"  ... and {len(refused) - 20} more (--json lists them all)")
    if refused:
        sys.exit(1)


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
