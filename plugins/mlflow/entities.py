"""MLflow's entities (experiments, runs, metrics, params, tags, file listings) as its REST API writes them, to and
from the appliance's runs.

MLflow's client writes protobuf JSON: 64-bit integers (steps, timestamps) may come as strings, and doubles that
are not finite as the strings "NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import json

from appliance import BadRequest

DEFAULT_EXPERIMENT = "Default"  # MLflow's experiment "0"
STATUS = {"running": "RUNNING", "succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED",
          "queued": "SCHEDULED"}
STATES = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "cancelled"}


def experiment_id(exp: dict) -> str:
    return "0" if exp["name"] == DEFAULT_EXPERIMENT else str(exp["id"])


def experiment(exp: dict) -> dict:
    eid = experiment_id(exp)
    created = int(exp["created"] * 1000)
    return {"experiment_id": eid, "name": exp["name"], "artifact_location": f"mlflow-artifacts:/{eid}",
            "lifecycle_stage": "active", "creation_time": created, "last_update_time": created, "tags": []}


def find_experiment(svc, raw) -> dict:
    raw = str(raw or "")
    if raw == "0":
        return svc.experiment(DEFAULT_EXPERIMENT)
    if not raw.isdigit():
        raise BadRequest(f"experiment_id {raw!r}: this box's experiments have numbers as ids")
    return svc.experiment_by_id(int(raw))


def run(svc, r: dict) -> dict:
    """A run with its latest metrics, its params and tags, and the artifact URI its client uploads to."""
    eid = experiment_id(svc.experiment(r["experiment"], create=False))
    start = r["started"] or r["created"]
    info = {"run_id": str(r["id"]), "run_uuid": str(r["id"]), "run_name": r["spec_name"], "experiment_id": eid,
            "user_id": (r["env"] or {}).get("user") or "", "status": STATUS.get(r["state"], "RUNNING"),
            "start_time": int(start * 1000), "artifact_uri": f"mlflow-artifacts:/{eid}/{r['id']}/artifacts",
            "lifecycle_stage": "active"}
    if r["finished"]:
        info["end_time"] = int(r["finished"] * 1000)
    params = r["params"].get("hyperparameters", {})
    data = {"metrics": [metric(m) for m in svc.latest_metrics(r["id"])],
            "params": [{"key": k, "value": v if isinstance(v, str) else json.dumps(v)} for k, v in params.items()],
            "tags": [{"key": k, "value": v} for k, v in r["tags"].items()]}
    return {"info": info, "data": data, "inputs": {}}


def metric(m: dict) -> dict:
    return {"key": m["key"], "value": m["value"], "timestamp": int(m["time"] * 1000), "step": m["step"]}


def environment(tags: dict, user: str | None) -> dict:
    """What MLflow's client tells of its caller (in system tags), kept as the run's environment, so
    ``runs compare`` shows a change of commit or script between two MLflow runs."""
    commit = tags.get("mlflow.source.git.commit")
    return {"user": user or tags.get("mlflow.user"), "source": tags.get("mlflow.source.name"),
            "git": {"commit": commit} if commit else None, "client": "mlflow"}


def pairs(items, what: str) -> dict[str, str]:
    """MLflow's ``[{"key", "value"}]`` lists (params, tags) as a dict."""
    if not isinstance(items, list | tuple) or not all(isinstance(i, dict) and isinstance(i.get("key"), str)
                                              for i in items):
        raise BadRequest(f"{what} must be a list of {{\"key\", \"value\"}} objects")
    return {i["key"]: "" if i.get("value") is None else str(i["value"]) for i in items}


def number(raw, name: str, default=None) -> float:
    """A protobuf JSON number: a number, or a string of one (64-bit integers, NaN and the infinities)."""
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"field {name!r} is required")
        return default
    if isinstance(raw, bool):
        raise BadRequest(f"field {name!r} must be a number, got {raw!r}")
    if isinstance(raw, int | float):
        return raw
    try:
        return int(raw) if str(raw).lstrip("-").isdigit() else float(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"field {name!r} must be a number, got {raw!r}") from None


def metric_columns(metrics: list) -> dict:
    """MLflow's metric objects as the columns ``run_tracking.log`` takes (times from milliseconds to seconds)."""
    if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
        raise BadRequest("metrics must be a list of {\"key\", \"value\", \"timestamp\", \"step\"} objects")
    keys, values, steps, times = [], [], [], []
    for m in metrics:
        keys.append(m.get("key"))
        values.append(float(number(m.get("value"), "value")))
        steps.append(int(number(m.get("step"), "step", 0)))
        times.append(number(m.get("timestamp"), "timestamp") / 1000)
    return {"key": keys, "value": values, "step": steps, "time": times}


def listing(files: list[dict], prefix: str) -> list[dict]:
    """The files and directories directly under ``prefix``, relative to it, as MLflow lists them."""
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    out: dict[str, dict] = {}
    for f in files:
        rest = f["path"][len(base):]
        head, sep, _ = rest.partition("/")
        if sep:
            out.setdefault(head, {"path": head, "is_dir": True})
        else:
            out[head] = {"path": head, "is_dir": False, "file_size": f["size"]}
    return sorted(out.values(), key=lambda f: f["path"])
