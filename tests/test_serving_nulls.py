"""Missing values in requests: a model that imputes an input takes a JSON null (or NaN in a binary tensor)
there, and the prediction log keeps it as null; a model that does not is refused, naming the input and index."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from conftest import make_project
from serving_models import imputing_model
from tritonclient.utils import InferenceServerException

from appliance.testing import DaemonProcess

TOML = """
[serving]
port = 0

[deployments.imputes]
model = "delays:1"

[deployments.strict]
model = "delays:2"

[monitors.strict_health]
kind = "serving"
deployment = "strict"
max_error_rate = 0.05
"""
MEANS = [10.0, -2.0, 0.5]
FEATURES = ["dep_delay", "temp", "wind"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("nulls")
    project = make_project(root / "project", [], TOML)
    path = imputing_model(root / "m.onnx", seed=3, means=MEANS)
    sample = root / "sample.parquet"  # its columns name the features, in order
    pq.write_table(pa.table({f: [float(i), 1.0] for i, f in enumerate(FEATURES)}), sample)
    with DaemonProcess(root / "home", project) as d:
        # The same graph twice, registered as a user would; only the first says it imputes its input.
        d.register_model("delays", path, sample=sample, nullable=("features",))
        d.register_model("delays", path, sample=sample)
        d.port = d.info["ports"]["serving"]
        d.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {x["name"]: x["state"] for x in d.get("/deployments").json()["deployments"]}
            if states == {"imputes": "ready", "strict": "ready"}:
                break
            time.sleep(0.1)
        yield d


def infer_json(d, model: str, rows: list[list]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{d.port}/v2/models/{model}/infer", json={
        "id": f"{model}-{time.monotonic_ns()}",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [len(rows), 3], "data": rows}]})


def test_a_json_null_is_imputed_where_the_model_says_it_imputes(served):
    rows = [[5.0, None, 1.0], [None, None, None], [1.0, 2.0, 3.0]]
    r = infer_json(served, "imputes", rows)
    assert r.status_code == 200, r.text
    x = np.array([[np.nan if v is None else v for v in row] for row in rows], np.float32)
    want = served.session.run(None, {"features": x})[0]
    got = np.array(r.json()["outputs"][0]["data"]).reshape(-1, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.isfinite(got).all()


def test_nan_in_a_binary_tensor_is_a_missing_value_too_through_tritonclient(served):
    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
    x = np.array([[np.nan, 1.0, 2.0], [3.0, 4.0, np.nan]], np.float32)
    inp = triton.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    out = client.infer("imputes", [inp], outputs=[triton.InferRequestedOutput("probability", binary_data=True)])
    np.testing.assert_allclose(out.as_numpy("probability"), served.session.run(None, {"features": x})[0],
                               atol=1e-6)
    with pytest.raises(InferenceServerException, match="input 'features': value at flat index 0 is NaN"):
        client.infer("strict", [inp])
    inf = triton.InferInput("features", [1, 3], "FP32")
    inf.set_data_from_numpy(np.array([[np.inf, 1.0, 2.0]], np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match="value at flat index 0 is inf; inputs must be finite"):
        client.infer("imputes", [inf])


def test_a_model_that_does_not_impute_refuses_a_null_naming_input_and_index(served):
    r = infer_json(served, "strict", [[1.0, 2.0, 3.0], [4.0, None, 6.0]])
    assert r.status_code == 400
    assert r.json()["error"] == ("input 'features': value at flat index 4 is null (missing), and this model does not "
                                 "impute missing values of this input")


def test_the_prediction_log_keeps_a_null_as_null(served):
    r = infer_json(served, "imputes", [[7.0, None, 0.25]])
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    rows = [p for p in served.get("/predictions", params={"deployment": "imputes", "limit": 1000}).json()
            if p["request_id"] == rid]
    assert len(rows) == 1
    assert json.loads(rows[0]["inputs"]) == {"dep_delay": 7.0, "temp": None, "wind": 0.25}


def test_models_show_and_deployments_name_the_inputs_their_order_types_and_nulls(served):
    d = served.get("/deployments/imputes").json()
    assert d["inputs"][0]["features"] == FEATURES and d["inputs"][0]["nullable"] is True
    assert served.get("/deployments/strict").json()["inputs"][0]["nullable"] is False
    out = served.cli("deployments", "show", "imputes")
    assert out.returncode == 0, out.stderr
    assert "TAKES NULL" in out.stdout and "dep_delay, temp, wind" in out.stdout
    example = json.loads(out.stdout.rsplit("\n", 2)[-2])  # the example request, as printed, is answered
    r = httpx.post(f"http://127.0.0.1:{served.port}/v2/models/imputes/infer", json=example)
    assert r.status_code == 200, r.text
    out = served.cli("models", "show", "delays")
    assert out.returncode == 0, out.stderr
    assert "inputs of version 2" in out.stdout and "dep_delay, temp, wind" in out.stdout


def test_a_clients_bad_requests_are_counted_apart_from_server_errors(served):
    served.cli("monitors", "run", "strict_health")  # counts start from here
    for row in ([1.0, 2.0, 3.0], [None, 2.0, 3.0], [1.0, None, 3.0], [4.0, 5.0, 6.0]):
        infer_json(served, "strict", [row])
    out = served.cli("monitors", "run", "strict_health", "--json")
    assert out.returncode == 0, out.stdout + out.stderr  # 0: no alert firing
    result = json.loads(out.stdout)["result"]
    health = result["details"]["health"]
    assert (health["error_rate"], health["client_error_rate"], health["client_errors"]) == (0.0, 0.5, 2)
    check = next(c for c in result["checks"] if c["rule"] == "strict_health.error_rate")
    assert not check["firing"] and "50.0% were refused as the client's mistakes (4xx)" in check["message"]
