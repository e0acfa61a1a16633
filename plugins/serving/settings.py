"""Reading ``[serving]`` and ``[deployments.NAME]`` from appliance.toml, with errors that name the key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .deployments import DeploymentSpec, parse_target

SERVING_KEYS = {"host", "port", "max_body_mb", "max_buffered_mb", "max_connections", "header_timeout_s",
                "body_timeout_s", "idle_timeout_s", "log_max_pending", "feedback_max_pending"}
DEPLOYMENT_KEYS = {"model", "max_batch_size", "max_queue_delay_us", "shadow", "log_sample", "max_request_rows",
                   "entity_keys", "features", "features_input"}
DEFAULT_PORT = 8000
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one client, or all of them together, may make the serving port hold (``http`` enforces it)."""

    max_body: int = 64 * 1024 * 1024
    max_buffered: int = 256 * 1024 * 1024
    max_connections: int = 1024
    header_timeout_s: int = 10
    body_timeout_s: int = 30
    idle_timeout_s: int = 60


@dataclass
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    # Logged requests that may wait for the prediction log's writer; beyond it new ones are left out (and an
    # alert says so) rather than serving slowing down or memory growing without bound.
    log_max_pending: int = 200_000
    # Feedback labels that may wait to be written; beyond it feedback is refused with a 503 (the client retries).
    feedback_max_pending: int = 100_000
    deployments: dict[str, DeploymentSpec] = field(default_factory=dict)


def _int(config, value, low, high, *keys):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise config.error(f"expected an integer from {low} to {high}, got {value!r}", *keys)
    return value


def read(config) -> ServingSettings:
    out = ServingSettings()
    # The environment may move the default port (tests and side-by-side daemons use 0: any free port).
    env_port = os.environ.get("APPLIANCE_SERVING_PORT", "")
    if env_port.isdigit() and int(env_port) <= 65535:
        out.port = int(env_port)
    serving = config.section("serving")
    for key in serving:
        if key not in SERVING_KEYS:
            raise config.error(f"unknown key; known keys: {', '.join(sorted(SERVING_KEYS))}", "serving", key)
    if "host" in serving:
        if not isinstance(serving["host"], str) or not serving["host"]:
            raise config.error(f"expected an address, got {serving['host']!r}", "serving", "host")
        out.host = serving["host"]
    if "port" in serving:
        out.port = _int(config, serving["port"], 0, 65535, "serving", "port")
    limits = {}
    if "max_body_mb" in serving:
        limits["max_body"] = _int(config, serving["max_body_mb"], 1, 4096, "serving", "max_body_mb") * MB
    # Bodies being received on all connections together: by default room for four of the largest.
    limits["max_buffered"] = 4 * limits.get("max_body", out.limits.max_body)
    if "max_buffered_mb" in serving:
        limits["max_buffered"] = _int(config, serving["max_buffered_mb"], 1, 65_536, "serving", "max_buffered_mb") * MB
        if limits["max_buffered"] < limits.get("max_body", out.limits.max_body):
            raise config.error("must be at least max_body_mb: one largest request must fit", "serving",
                               "max_buffered_mb")
    if "max_connections" in serving:
        limits["max_connections"] = _int(config, serving["max_connections"], 1, 1_000_000, "serving",
                                         "max_connections")
    for key in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
        if key in serving:
            limits[key] = _int(config, serving[key], 1, 86_400, "serving", key)
    out.limits = Limits(**limits)
    if "log_max_pending" in serving:
        out.log_max_pending = _int(config, serving["log_max_pending"], 1, 100_000_000, "serving", "log_max_pending")
    if "feedback_max_pending" in serving:
        out.feedback_max_pending = _int(config, serving["feedback_max_pending"], 1, 100_000_000, "serving",
                                        "feedback_max_pending")
    deployments = config.section("deployments")
    if not isinstance(deployments, dict):
        raise config.error("expected tables [deployments.NAME]", "deployments")
    for name, d in deployments.items():
        keys = ("deployments", name)
        if not isinstance(d, dict):
            raise config.error("expected a table", *keys)
        if not name.replace("_", "").replace("-", "").isalnum() or not name[0].isalpha():
            raise config.error("a deployment name starts with a letter and uses letters, digits, _ and -", *keys)
        for key in d:
            if key not in DEPLOYMENT_KEYS:
                raise config.error(f"unknown key; known keys: {', '.join(sorted(DEPLOYMENT_KEYS))}", *keys, key)
        if "model" not in d:
            raise config.error("missing 'model' (MODEL@ALIAS or MODEL:VERSION)", *keys)
        try:
            model, ref = parse_target(str(d["model"]))
        except ValueError as exc:
            raise config.error(str(exc), *keys, "model") from None
        sample = d.get("log_sample", 1.0)
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 1:
            raise config.error(f"expected a fraction from 0 to 1, got {sample!r}", *keys, "log_sample")
        lists = {}
        for key in ("entity_keys", "features"):
            value = d.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise config.error(f"expected a list of names, got {value!r}", *keys, key)
            lists[key] = tuple(value)
        if bool(lists["entity_keys"]) != ("features_input" in d) or (lists["features"] and not lists["entity_keys"]):
            raise config.error("online features need entity_keys and features_input together (features is "
                               "optional: by default it is the model's own feature list)", *keys)
        out.deployments[name] = DeploymentSpec(
            name=name, model=model, ref=ref,
            max_batch_size=_int(config, d.get("max_batch_size", 1), 1, 65_536, *keys, "max_batch_size"),
            max_queue_delay_us=_int(config, d.get("max_queue_delay_us", 0), 0, 10_000_000, *keys,
                                    "max_queue_delay_us"),
            shadow=d.get("shadow"), log_sample=float(sample),
            max_request_rows=_int(config, d.get("max_request_rows", 65_536), 1, 1 << 24, *keys, "max_request_rows"),
            entity_keys=lists["entity_keys"], features=lists["features"], features_input=d.get("features_input"))
    for name, spec in out.deployments.items():
        if spec.shadow is not None and (spec.shadow not in out.deployments or spec.shadow == name):
            raise config.error(f"shadow must name another deployment, got {spec.shadow!r}", "deployments", name,
                               "shadow")
    return out
