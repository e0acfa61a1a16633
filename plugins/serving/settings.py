"""Reading ``[serving]`` and ``[deployments.NAME]`` from appliance.toml, with errors that name the key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .deployments import DeploymentSpec, parse_target

SERVING_KEYS = {"host", "port", "max_body_mb", "log_max_pending"}
DEPLOYMENT_KEYS = {"model", "max_batch_size", "max_queue_delay_us", "shadow", "log_sample", "max_request_rows",
                   "entity_keys", "features", "features_input"}
DEFAULT_PORT = 8000


@dataclass
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body: int = 64 * 1024 * 1024
    # Logged requests that may wait for the prediction log's writer; beyond it new ones are left out (and an
    # alert says so) rather than serving slowing down or memory growing without bound.
    log_max_pending: int = 200_000
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
    if "max_body_mb" in serving:
        out.max_body = _int(config, serving["max_body_mb"], 1, 4096, "serving", "max_body_mb") * 1024 * 1024
    if "log_max_pending" in serving:
        out.log_max_pending = _int(config, serving["log_max_pending"], 1, 100_000_000, "serving", "log_max_pending")
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
