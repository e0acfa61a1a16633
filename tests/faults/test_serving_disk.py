"""A full disk under the prediction log: every request is still answered, every one the log could not keep is
counted in /metrics and raised as an alert that says why, and once there is room again the log writes again."""

from __future__ import annotations

import time

import httpx
from conftest import make_project
from prometheus_client.parser import text_string_to_metric_families
from serving_models import N_FEATURES, linear_model

from appliance.testing import DaemonProcess
from faults.harness import fill_disk, serving_address, small_disk

TOML = '[serving]\nport = 0\n\n[deployments.fraud]\nmodel = "fraud@champion"\n'
BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, N_FEATURES], "data": [0.5] * N_FEATURES}]}


def log_counts(base: str) -> tuple[float, float]:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
    return (families["appliance_prediction_log_written_rows"].samples[0].value,
            families["appliance_prediction_log_dropped_requests"].samples[0].value)


def test_rows_a_full_disk_refuses_are_counted_and_alerted(tmp_path):
    project = make_project(tmp_path / "project", [], TOML)
    model = linear_model(tmp_path / "m.onnx", seed=1)
    with small_disk(tmp_path / "disk", mb=64) as disk, DaemonProcess(disk / "home", project) as d:
        d.register_model("fraud", model)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while d.get("/deployments/fraud").json()["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        host, port = serving_address(d)
        base = f"http://{host}:{port}"
        with httpx.Client(base_url=base) as client:
            for _ in range(20):  # written, not yet checkpointed when the disk fills
                assert client.post("/v2/models/fraud/infer", json=BODY).status_code == 200
            while log_counts(base)[0] < 20:
                time.sleep(0.05)
            written_before, _ = log_counts(base)
            filler = fill_disk(disk)
            for _ in range(300):
                assert client.post("/v2/models/fraud/infer", json=BODY).status_code == 200
                time.sleep(0.005)  # spread over several of the writer's cycles
        time.sleep(1.5)  # a quiet spell, full: when the log would checkpoint what it wrote
        filler.unlink()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            written, dropped = log_counts(base)
            alerts = [e for e in d.events("alert.raised") if e["data"].get("rule") == "prediction_log_dropping"]
            if written - written_before + dropped >= 300 and alerts:
                break
            time.sleep(0.2)
        assert dropped > 0 and written - written_before + dropped == 300, (written - written_before, dropped)
        assert alerts, "no alert for the rows the full disk refused"
        assert "the disk holding the store is full" in alerts[0]["data"]["message"], alerts[0]["data"]["message"]
        # With room again the log writes again: nothing the full disk did lasts longer than the full disk.
        with httpx.Client(base_url=base) as client:
            for i in range(10):
                assert client.post("/v2/models/fraud/infer", json={**BODY, "id": f"later-{i}"}).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and log_counts(base)[0] < written + 10:
            time.sleep(0.2)
        assert log_counts(base) == (written + 10, dropped)
