"""Monitor kinds that watch a deployment's data and model: drift, prediction drift, data quality, realized
performance from feedback, and bias between groups. All read the prediction log of one deployment over a
window (``window_s`` seconds ending now)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import data, drift, stats

WINDOW = {"deployment": None, "window_s": 86400.0, "window_end": None, "min_rows": 30}
REFERENCE = {"reference": "training_set", "reference_offset_s": None, "reference_max_rows": 1_000_000}


@dataclass
class Kind:
    """A monitor kind: ``options`` maps every key it takes to its default (``None`` with ``required``)."""

    name: str
    description: str
    run: Any
    options: dict = field(default_factory=dict)
    required: tuple[str, ...] = ("deployment",)


def _current(ctx, features=None, outputs=None) -> data.Frame | None:
    start, end = data.window_bounds(ctx.options)
    frame = data.log_window(ctx.app, ctx.options["deployment"], start, end, features=features, outputs=outputs)
    ctx.details["window"] = {"start": start, "end": end, "rows": frame.rows}
    ctx.value("window_rows", frame.rows, deployment=ctx.options["deployment"])
    if frame.rows < int(ctx.options["min_rows"]):
        ctx.no_data(f"{frame.rows} logged row(s) in the window; at least {ctx.options['min_rows']} are needed")
        return None
    return frame


def _drift_columns(ref: data.Frame, cur: data.Frame) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    shared = [c for c in cur.columns if c in ref.columns]
    return {c: (ref.columns[c], cur.columns[c], ref.numeric[c] and cur.numeric[c]) for c in shared}


def _window_and_reference(ctx) -> tuple[data.Frame, data.Frame] | None:
    """The deployment's current window of inputs and the reference to compare it with (None: no data)."""
    o = ctx.options
    cur = _current(ctx, features=o.get("features"))
    if cur is None:
        return None
    ref = data.reference(ctx.app, o, o["deployment"], list(cur.columns))
    ctx.details["reference"] = {"source": ref.source, "rows": ref.rows}
    return cur, ref


def run_drift(ctx) -> None:
    o = ctx.options
    window = _window_and_reference(ctx)
    if window is None:
        return
    cur, ref = window
    columns = _drift_columns(ref, cur)
    if not columns:
        ctx.no_data(f"the window and the reference share no column ({', '.join(cur.columns)})")
        return
    ctx.progress(0.3, f"drift of {len(columns)} column(s)")
    result = drift.dataset_drift(columns, tests=o.get("tests"), thresholds=o.get("thresholds"),
                                 drift_share=float(o["drift_share"]))
    ctx.details["drift"] = result
    dep = o["deployment"]
    for col in result["columns"]:
        ctx.value("drift_statistic", col["statistic"], deployment=dep, column=col["column"], test=col["test"])
        ctx.value("column_drifted", int(col["drifted"]), deployment=dep, column=col["column"])
    ctx.value("drift_share", result["drift_share"], deployment=dep)
    ctx.value("dataset_drift", int(result["dataset_drift"]), deployment=dep)
    drifted = result["drifted_columns"]
    ctx.check("dataset_drift", result["dataset_drift"],
              f"{len(drifted)} of {len(columns)} column(s) of deployment {dep} drifted"
              + (f": {', '.join(drifted)}" if drifted else ""),
              subject=f"deployment:{dep}", value=result["drift_share"], threshold=result["share_threshold"])


def run_prediction_drift(ctx) -> None:
    o = ctx.options
    output = o["output"]
    cur = _current(ctx, features=[], outputs=[output])
    if cur is None:
        return
    ref = data.reference(ctx.app, {**o, "outputs": [output]}, o["deployment"], [output])
    ctx.details["reference"] = {"source": ref.source, "rows": ref.rows}
    if ref.rows < int(o["min_rows"]) or output not in ref.columns:
        ctx.no_data(f"the reference has {ref.rows} row(s) of output {output!r}")
        return
    col = drift.column_drift(output, ref.columns[output], cur.columns[output], numeric=cur.numeric[output],
                             test=o.get("test"), threshold=o.get("threshold"))
    ctx.details["drift"] = col.to_dict()
    dep = o["deployment"]
    ctx.value("prediction_drift_statistic", col.statistic, deployment=dep, output=output, test=col.test)
    ctx.check("prediction_drift", col.drifted,
              f"predictions of deployment {dep} ({output}) drifted: {col.test} = {col.statistic:.4g} "
              f"(threshold {col.threshold:g})", subject=f"deployment:{dep}", value=col.statistic,
              threshold=col.threshold)


def run_data_quality(ctx) -> None:
    o = ctx.options
    window = _window_and_reference(ctx)
    if window is None:
        return
    cur, ref = window
    dep = o["deployment"]
    report: dict[str, dict] = {}
    for name, values in cur.columns.items():
        nulls = _nulls(values, cur.numeric[name])
        row: dict[str, Any] = {"null_rate": float(nulls.mean()) if len(values) else 0.0}
        present = values[~nulls]
        if name in ref.columns and len(present):
            ref_vals = ref.columns[name][~_nulls(ref.columns[name], ref.numeric[name])]
            if cur.numeric[name] and ref.numeric[name] and len(ref_vals):
                lo, hi = float(ref_vals.min()), float(ref_vals.max())
                row["out_of_range_rate"] = float(np.mean((present < lo) | (present > hi)))
                row["range"] = [lo, hi]
            elif not cur.numeric[name]:
                known = {str(v) for v in ref_vals}
                unseen = [str(v) for v in present if str(v) not in known]
                row["unseen_rate"] = len(unseen) / len(present)
                row["unseen"] = sorted(set(unseen))[:20]
        report[name] = row
        for metric in ("null_rate", "out_of_range_rate", "unseen_rate"):
            if metric in row:
                ctx.value(metric, row[metric], deployment=dep, column=name)
    ctx.details["quality"] = report
    for metric, limit_key, words in (("null_rate", "max_null_rate", "null values"),
                                     ("out_of_range_rate", "max_out_of_range_rate", "values outside the reference range"),
                                     ("unseen_rate", "max_unseen_rate", "categories the reference never had")):
        limit = float(o[limit_key])
        bad = {c: r[metric] for c, r in report.items() if r.get(metric, 0.0) > limit}
        worst = max(bad.values(), default=max((r.get(metric, 0.0) for r in report.values()), default=0.0))
        ctx.check(metric, bool(bad), f"deployment {dep}: " + (
            ", ".join(f"{c} has {v:.1%} {words}" for c, v in bad.items()) if bad else f"no column over {limit:.1%} {words}"),
            subject=f"deployment:{dep}", value=worst, threshold=limit)


def _nulls(values: np.ndarray, numeric: bool) -> np.ndarray:
    if numeric:
        return np.isnan(values.astype(float))
    return np.array([v is None for v in values], dtype=bool)


BOUNDS = {"min_auc": "auc", "min_accuracy": "accuracy", "min_f1": "f1", "min_precision": "precision",
          "min_recall": "recall", "max_mae": "mae", "max_rmse": "rmse", "min_r2": "r2"}


def run_performance(ctx) -> None:
    o = ctx.options
    start, end = data.window_bounds(o)
    dep = o["deployment"]
    got = data.feedback_window(ctx.app, dep, start, end, output=o["output"])
    n = len(got["label"])
    ctx.details["labeled_rows"] = n
    ctx.value("labeled_rows", n, deployment=dep)
    if n < int(o["min_rows"]):
        ctx.no_data(f"{n} prediction(s) with a label in the window; at least {o['min_rows']} are needed")
        return
    metrics = quality_metrics(o["task"], got["label"], got["score"], float(o["decision_threshold"]))
    ctx.details["metrics"] = metrics
    for name, value in metrics.items():
        ctx.value(name, value, deployment=dep)
    broken = []
    for key, metric in BOUNDS.items():
        bound = o.get(key)
        if bound is None or metric not in metrics or math.isnan(metrics[metric]):
            continue
        if (key.startswith("min_") and metrics[metric] < bound) or (key.startswith("max_") and metrics[metric] > bound):
            broken.append(f"{metric} {metrics[metric]:.4g} ({key.replace('_', ' ')} {bound:g})")
    ctx.check("performance", bool(broken), f"deployment {dep} on {n} labeled prediction(s): "
              + ("; ".join(broken) if broken else "every metric within its bound"), subject=f"deployment:{dep}")


def quality_metrics(task: str, label: np.ndarray, score: np.ndarray, decision: float) -> dict[str, float]:
    """Realized quality: AUC, accuracy, precision, recall and F1 (binary, deciding at ``decision``), or MAE,
    RMSE and R² (regression); NaN where a metric is undefined (AUC with one class only)."""
    if task == "regression":
        return stats.regression(label, score)
    pred = score >= decision
    return {"auc": stats.roc_auc(label >= 0.5, score), **stats.classification(label >= 0.5, pred)}


def run_bias(ctx) -> None:
    o = ctx.options
    dep, group, output = o["deployment"], o["group"], o["output"]
    start, end = data.window_bounds(o)
    got = data.feedback_window(ctx.app, dep, start, end, output=output, group=group)
    n = len(got["label"])
    ctx.details["labeled_rows"] = n
    if n < int(o["min_rows"]):
        ctx.no_data(f"{n} prediction(s) with a label in the window; at least {o['min_rows']} are needed")
        return
    pred = got["score"] >= float(o["decision_threshold"])
    rates = stats.group_rates(got["label"] >= 0.5, pred, got["group"])
    gaps = stats.parity_differences(rates)
    ctx.details.update({"groups": rates, **gaps})
    for g, r in rates.items():
        for metric in ("selection_rate", "tpr", "accuracy"):
            ctx.value(f"group_{metric}", r[metric], deployment=dep, column=group, group=g)
    for metric, key in (("demographic_parity_difference", "max_demographic_parity_difference"),
                        ("equal_opportunity_difference", "max_equal_opportunity_difference")):
        value, limit = gaps[metric], float(o[key])
        ctx.value(metric, value, deployment=dep, column=group)
        ctx.check(metric, value > limit, f"deployment {dep}, groups of {group}: {metric.replace('_', ' ')} "
                  f"{value:.3f} ({'over' if value > limit else 'within'} {limit:g}); "
                  + ", ".join(f"{g}: {r['selection_rate']:.2f} selected" for g, r in rates.items()),
                  subject=f"deployment:{dep}", value=value, threshold=limit)


DRIFT_OPTIONS = {"features": None, "tests": None, "thresholds": None, "drift_share": drift.DRIFT_SHARE}
LABELS = {"output": None, "decision_threshold": 0.5}

KINDS = [
    Kind("drift", "feature drift of a deployment's inputs against its reference, per column and overall",
         run_drift, {**WINDOW, **REFERENCE, **DRIFT_OPTIONS}),
    Kind("prediction_drift", "drift of a deployment's predictions (one output) against an earlier window",
         run_prediction_drift, {**WINDOW, **REFERENCE, "reference": "window", "output": None, "test": None,
                                "threshold": None}, ("deployment", "output")),
    Kind("data_quality", "null rate, out-of-range values and unseen categories of a deployment's inputs",
         run_data_quality, {**WINDOW, **REFERENCE, "features": None, "max_null_rate": 0.05,
                            "max_out_of_range_rate": 0.01, "max_unseen_rate": 0.01}),
    Kind("performance", "realized quality from feedback labels (AUC, accuracy, F1, MAE, ...)",
         run_performance, {**WINDOW, **LABELS, "task": "binary", **dict.fromkeys(BOUNDS)}, ("deployment", "output")),
    Kind("bias", "a metric per group of a column, demographic parity and equal opportunity differences",
         run_bias, {**WINDOW, **LABELS, "group": None, "max_demographic_parity_difference": 0.1,
                    "max_equal_opportunity_difference": 0.1}, ("deployment", "output", "group")),
]
