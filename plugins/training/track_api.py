"""Control API routes for runs tracked from outside (``appliance.track``) and commands run under the box's care
(``appliance run``). Both are ordinary runs; see ``tracked``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from appliance import BadRequest, Reply, Route, Stream

from . import tracking

#: The largest file a run keeps (a checkpoint, a report): more than the control API's usual 16 MB body. The body
#: is held in memory while it is stored, and only a holder of the token can send one.
ARTIFACT_MAX_BYTES = 1 << 30

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
COMMAND_KINDS = ("command", "command_gpu")


def _service(req):
    return req.app.registry("services").get("run_tracking")


def _text(body: dict, key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field {key!r} must be a non-empty string")
    return value


def start(req) -> Reply:
    body = req.json_object()
    unknown = set(body) - {"experiment", "name", "params", "tags", "env"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected experiment, name, params, "
                         "tags, env")
    run = _service(req).start(experiment=_text(body, "experiment", "default"), name=_text(body, "name", "run"),
                              source="track", params=body.get("params"), tags=body.get("tags"),
                              env=body.get("env"))
    return Reply(run, 201)


def log(req) -> dict:
    body = req.json_object()
    unknown = set(body) - {"metrics", "params", "tags", "env"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected metrics, params, tags, env")
    return _service(req).log(req.int_param("id"), metrics=body.get("metrics"), params=body.get("params"),
                             tags=body.get("tags"), env=body.get("env"))


def end(req) -> dict:
    body = req.json_object()
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        raise BadRequest("field 'error' must be a string")
    return _service(req).end(req.int_param("id"), str(body.get("state", "succeeded")), error)


def put_artifact(req) -> Reply:
    return Reply(_service(req).put_artifact(req.int_param("id"), req.path_params["path"], req.body), 201)


def list_artifacts(req) -> list:
    return _service(req).artifacts(req.int_param("id"))


def get_artifact(req) -> Stream:
    data = _service(req).artifact_bytes(req.int_param("id"), req.path_params["path"])
    return Stream(iter([data]), media_type="application/octet-stream")


def start_command(req) -> Reply:
    """Run a command as a job on its own run (``appliance run``). It runs as the daemon's user: this is a
    control-API action behind the token, like every other."""
    body = req.json_object()
    unknown = set(body) - {"command", "cwd", "gpu", "name", "experiment", "env", "timeout_s"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected command, cwd, gpu, name, "
                         "experiment, env, timeout_s")
    command = body.get("command")
    if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
        raise BadRequest("field 'command' is required: the program and its arguments, a list of strings")
    cwd = body.get("cwd")
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or not Path(cwd).is_dir():
        raise BadRequest(f"field 'cwd' must be an absolute path of a directory on the daemon's machine, got {cwd!r}")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) and ENV_NAME.match(k) for k, v in env.items()):
        raise BadRequest("field 'env' must be an object of NAME: value strings (names: letters, digits, '_')")
    gpu = body.get("gpu", False)
    timeout = body.get("timeout_s")
    if not isinstance(gpu, bool):
        raise BadRequest("field 'gpu' must be true or false")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise BadRequest(f"field 'timeout_s' must be a number of seconds > 0, got {timeout!r}")
    name = body.get("name") or " ".join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command))[:250]
    run = _service(req).start(experiment=_text(body, "experiment", "commands"), name=str(name), source="command",
                              command=command, state="queued")
    try:
        job = req.app.jobs.submit(COMMAND_KINDS[gpu], {"run_id": run["id"], "command": command, "cwd": cwd,
                                                      "env": env}, timeout_s=timeout, origin=f"run:{run['id']}")
    except Exception:
        req.app.catalog.db.execute("delete from training_runs where id = ?", [run["id"]])
        raise
    tracking.set_job(req.app, run["id"], job["id"])
    return Reply({"run_id": run["id"], "job_id": job["id"], "run": tracking.get_run(req.app.catalog.db, run["id"])},
                 202)


ROUTES = [
    Route("POST", "/runs/track", start, "start a run tracked from outside (appliance.track)"),
    Route("POST", "/runs/command", start_command, "run a command as a job on its own run (appliance run)"),
    Route("POST", "/runs/{id}/log", log, "log metrics (columns), params, tags, environment to a tracked run"),
    Route("POST", "/runs/{id}/end", end, "end a tracked run: succeeded, failed or cancelled"),
    Route("GET", "/runs/{id}/artifacts", list_artifacts, "files kept with a run"),
    Route("PUT", "/runs/{id}/artifacts/{path:path}", put_artifact, "keep a file with a tracked run (raw body)",
          max_body=ARTIFACT_MAX_BYTES),
    Route("GET", "/runs/{id}/artifacts/{path:path}", get_artifact, "one file kept with a run"),
]
