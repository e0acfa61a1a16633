"""Champion against challenger: a deployment's answers and its shadow's, to the same requests, side by side.

The shadow answers every request the deployment answers (after it, never delaying it), and both answers are in
the prediction log under the same request id. The report pairs them by (request id, row), for the versions that
serve now: how often the two decide alike and how their scores spread and, for the requests that have labels,
both models' realized metrics (the monitoring plugin's ``model_quality`` service). The challenger wins when it
beats the champion by the promotion gate's margin on the gate's metric (``[registry.models.NAME.gate]``; else
AUC for a binary task, RMSE for a regression, by any margin), and the report then says how to promote it.
"""

from __future__ import annotations

import math
import re
import time

from appliance import ApplianceError, BadRequest

WINDOW_S = 86_400.0
MIN_LABELED = 30
BINS = 10
DEFAULT_METRIC = {"binary": "auc", "regression": "rmse"}
_OUTPUT = re.compile(r"^(?P<name>.+?)(\[(?P<index>\d+)\])?$")


def request(req) -> dict:
    """``GET /deployments/{name}/shadow``: the query's options checked, then ``report``."""
    from . import state

    if state.manager is None:
        raise ApplianceError("serving is not running", title="Serving stopped", status=503)
    q = req.query
    task = q.get("task") or None
    if task not in (None, "binary", "regression"):
        raise BadRequest(f"task must be binary or regression, got {task!r}")
    return report(req.app, state, req.path_params["name"], window_s=_number(q, "window_s", WINDOW_S),
                  output=q.get("output") or None, threshold=_number(q, "threshold", 0.5), task=task,
                  min_rows=req.int_query("min_rows", MIN_LABELED, minimum=1))


def _number(query, key: str, default: float) -> float:
    raw = query.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 and key == "window_s":
        raise BadRequest(f"query parameter {key!r} must be a {'positive ' if key == 'window_s' else ''}number, "
                         f"got {raw!r}")
    return value


def report(app, st, name: str, *, window_s: float, output: str | None, threshold: float, task: str | None,
           min_rows: int) -> dict:
    dep = st.manager.get(name)
    if not dep.spec.shadow:
        raise BadRequest(f"deployment {name!r} has no shadow; name one with [deployments.{name}] shadow = "
                         "\"OTHER_DEPLOYMENT\" to compare a challenger on its traffic", title="No shadow")
    shadow = st.manager.deployments.get(dep.spec.shadow)
    champion, challenger = dep.current, shadow.current if shadow is not None else None
    if champion is None or challenger is None:
        raise ApplianceError(f"deployment {name!r} or its shadow {dep.spec.shadow!r} is not serving yet",
                             title="Not ready", status=409)
    column, index = _output(champion, challenger, output)
    st.predlog.flush()
    since = time.time() - window_s
    pairs = _pairs(app.store.cursor(), (name, champion.version), (dep.spec.shadow, challenger.version),
                   _score(column, index), since)
    out = {"deployment": name, "shadow": dep.spec.shadow, "window_s": window_s,
           "output": column + (f"[{index}]" if index is not None else ""), "threshold": threshold}
    return {**out, **_compare(app, dep.spec, champion, challenger, pairs, threshold, task, min_rows)}


def _output(champion, challenger, given: str | None) -> tuple[str, int | None]:
    """The output compared and the position in it (None: a single number): ``given`` (``name`` or
    ``name[i]``), else the champion's first output (its positive class where it has two columns)."""
    if given is None:
        first = champion.outputs[0]
        width = first.shape[1] if len(first.shape) > 1 else 0
        return first.name, 1 if width == 2 else (0 if len(first.shape) > 1 else None)
    m = _OUTPUT.match(given)
    name = m["name"] if m else given
    for model in (champion, challenger):
        if name not in model.output_names:
            raise BadRequest(f"no output {name!r} in {model.name} version {model.version}; it gives "
                             f"{', '.join(model.output_names)} (name one, or name[i] for a column of it)")
    return name, int(m["index"]) if m and m["index"] is not None else None


def _score(column: str, index: int | None) -> str:
    path = '$."' + column.replace('"', '\\"') + '"'
    if index is None:
        return f"try_cast(json_extract_string(outputs, {_literal(path)}) as double)"
    return (f"try_cast(coalesce(json_extract_string(outputs, {_literal(f'{path}[{index}]')}), "
            f"json_extract_string(outputs, {_literal(path)})) as double)")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pairs(cur, champion: tuple[str, int], challenger: tuple[str, int], score: str, since: float) -> list[tuple]:
    """(champion score, challenger score, label or None) per request row both answered since ``since``."""
    side = (f"select request_id, row_index, {score} s from serving.prediction_log where deployment = ? and "
            "version = ? and shadow = ? and ts >= to_timestamp(?)")
    return cur.execute(f"""
        with c as ({side}), h as ({side}),
             f as (select request_id, row_index, label from serving.feedback
                   qualify row_number() over (partition by request_id, row_index order by ts desc) = 1)
        select c.s, h.s, f.label from c join h using (request_id, row_index) left join f using (request_id, row_index)
        where c.s is not null and h.s is not null""",
                       [*champion, False, since, *challenger, True, since]).fetchall()


def _compare(app, spec, champion, challenger, pairs: list[tuple], threshold: float, task: str | None,
             min_rows: int) -> dict:
    import numpy as np

    a = np.array([p[0] for p in pairs], float)
    b = np.array([p[1] for p in pairs], float)
    labels = np.array([np.nan if p[2] is None else p[2] for p in pairs], float)
    edges = _edges(np.concatenate([a, b]))
    sides = {"champion": {"model": champion.name, "version": champion.version, "scores": _spread(a, edges)},
             "challenger": {"model": challenger.name, "version": challenger.version, "scores": _spread(b, edges)}}
    out = {"pairs": len(pairs), "agreement": float(np.mean((a >= threshold) == (b >= threshold))) if pairs else None,
           "mean_abs_difference": float(np.mean(np.abs(a - b))) if pairs else None,
           "histogram_edges": edges.tolist(), **sides}
    known = ~np.isnan(labels)
    out["labeled"] = int(known.sum())
    task = task or ("binary" if np.isin(labels[known], (0.0, 1.0)).all() else "regression")
    out["task"] = task
    services = app.registry("services")
    quality = services.get("model_quality")
    gate = _gate(services.get("model_registry"), spec, task, quality)
    out["gate"] = gate
    for key, scores in (("champion", a), ("challenger", b)):
        sides[key]["metrics"] = (quality.metrics(task, labels[known], scores[known], threshold)
                                 if quality is not None and out["labeled"] else None)
    out.update(_verdict(out, spec, challenger, gate, min_rows, quality is not None))
    return out


def _edges(scores):
    import numpy as np

    lo, hi = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, BINS + 1)


def _spread(scores, edges) -> dict:
    import numpy as np

    if not scores.size:
        return {"mean": None, "std": None, "p10": None, "p50": None, "p90": None, "histogram": [0] * BINS}
    p10, p50, p90 = (float(x) for x in np.percentile(scores, [10, 50, 90]))
    return {"mean": float(scores.mean()), "std": float(scores.std()), "p10": p10, "p50": p50, "p90": p90,
            "histogram": np.histogram(scores, edges)[0].tolist()}


def _gate(registry, spec, task: str, quality) -> dict:
    """The metric and margin a challenger must win by: the model's configured gate where it names a metric
    measured on live traffic, else the task's default by any margin."""
    configured = registry.gate(spec.model, spec.ref) if registry is not None and not spec.ref.isdigit() else None
    measured = quality.metrics_of.get(task, {}) if quality is not None else {}
    if configured and configured["metric"] in measured:
        return {**configured, "source": f"[registry.models.{spec.model}.gate]"}
    metric = DEFAULT_METRIC[task]
    note = (f"; the configured gate's {configured['metric']!r} is not measured on live traffic" if configured
            else "")
    return {"metric": metric, "min_delta": 0.0, "higher_is_better": measured.get(metric, metric != "rmse"),
            "source": f"default for a {task} task{note}"}


def _verdict(out: dict, spec, challenger, gate: dict, min_rows: int, measured: bool) -> dict:
    metric = gate["metric"]
    if not measured:
        return {"winner": None, "promote": None, "verdict": "the monitoring plugin is not loaded: no realized metrics"}
    if out["labeled"] < min_rows:
        return {"winner": None, "promote": None,
                "verdict": f"{out['labeled']} of {out['pairs']} request(s) have labels; {min_rows} are needed to "
                           "name a winner"}
    old, new = out["champion"]["metrics"].get(metric), out["challenger"]["metrics"].get(metric)
    if old is None or new is None:
        return {"winner": None, "promote": None, "verdict": f"{metric} is undefined on these labels"}
    gain = new - old if gate["higher_is_better"] else old - new
    if gain <= 0:
        return {"winner": "champion", "promote": None,
                "verdict": f"the champion holds: {metric} {old:.4g} against the challenger's {new:.4g}"}
    if gain <= gate["min_delta"]:
        return {"winner": None, "promote": None,
                "verdict": f"the challenger leads on {metric} by {gain:.4g}, within the gate's margin "
                           f"({gate['min_delta']:g})"}
    promote = None
    if challenger.name == spec.model and not spec.ref.isdigit():
        promote = f"appliance models promote {spec.model} {challenger.version} {spec.ref}"
    return {"winner": "challenger", "promote": promote,
            "verdict": f"the challenger ({challenger.name} version {challenger.version}) wins on {metric} by "
                       f"{gain:.4g} ({new:.4g} against {old:.4g}; the gate asks more than {gate['min_delta']:g})"}
