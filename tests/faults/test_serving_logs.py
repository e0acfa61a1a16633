"""Errors a client can cause on the serving port, thousands of times over, must not flood the daemon's log:
each kind is logged at most once a minute, with a count of those held back, so the log files keep the evidence
of what started it instead of rotating it away."""

from __future__ import annotations

import logging
import time

import httpx
import numpy as np
from conftest import make_project
from prometheus_client.parser import text_string_to_metric_families
from serving_models import N_FEATURES, linear_model

from appliance.logthrottle import LogThrottle
from appliance.testing import DaemonProcess
from faults.harness import idle_connections, serving_address

TOML = """
[serving]
port = 0
max_connections = 8

[deployments.live]
model = "fraud@champion"
shadow = "challenger"

[deployments.challenger]
model = "narrow:1"
"""


def test_a_throttle_logs_each_kind_once_an_interval_and_counts_the_rest(caplog):
    throttle = LogThrottle("test.throttle", interval_s=0.2)
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        assert throttle.warning("refused %s", "a")
        assert not any(throttle.warning("refused %s", x) for x in "bcdef")  # the same kind, whatever the args
        assert throttle.error("another kind")
        time.sleep(0.25)
        assert throttle.warning("refused %s", "g")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "another kind", "refused g (and 5 more like it since the last one logged)"]


def test_a_failing_shadow_and_a_connection_flood_leave_a_few_log_lines(tmp_path):
    project = make_project(tmp_path / "project", [], TOML)
    with DaemonProcess(tmp_path / "home", project) as d:
        for name, n in (("fraud", N_FEATURES), ("narrow", N_FEATURES - 1)):  # the challenger cannot take the input
            model = linear_model(tmp_path / f"{name}.onnx", seed=1, n_features=n)
            d.register_model(name, model)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while {x["state"] for x in d.get("/deployments").json()["deployments"]} != {"ready"}:
            assert time.monotonic() < deadline, d.get("/deployments").text
            time.sleep(0.05)
        host, port = serving_address(d)
        x = np.ones((1, N_FEATURES), np.float32).tolist()
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, N_FEATURES], "data": x}]}
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            for _ in range(300):  # each one's shadow fails; every answer still comes from the live model
                assert client.post("/v2/models/live/infer", json=body).status_code == 200
        with idle_connections(host, port, 300):
            time.sleep(0.5)
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"http://{host}:{port}/metrics").text)}
        shadow_failures = [s.value for s in families["nv_inference_request_failure"].samples
                           if s.labels["reason"] == "shadow_error"]
        assert shadow_failures == [300]
        assert families["appliance_serving_refused_connections"].samples[0].value >= 290
    log = d.stderr()
    assert log.count("shadow deployment challenger failed") == 1, log[-3000:]
    assert log.count("serving refused connections") == 1, log[-3000:]
