"""Entity keys over the Open Inference Protocol as tritonclient sends them: binary tensors (its default) and
JSON give the same answer, the model's metadata lists the inputs an entity-key request takes, and the
``statistics`` extension the server advertises answers in Triton's shape."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import types

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from conftest import make_project
from serving_models import linear_model, reference

from appliance.testing import DaemonProcess

CARDS, SHOPS = 50, ["acme", "bolt", "cobalt", "dune"]
PROJECT = """
[serving]
port = 0

[entities.card]
join_keys = ["card_id"]

[entities.shop]
join_keys = ["shop"]

[feature_views.spend]
source = "data/spend.parquet"
entities = ["card"]
event_time = "ts"
features = ["amount"]

[feature_views.shops]
source = "data/shops.parquet"
entities = ["shop"]
event_time = "ts"
features = ["risk"]

[deployments.scored]
model = "fraud@champion"
entity_keys = ["card_id", "shop"]
features = ["spend:amount", "shops:risk", "amount_now"]
features_input = "features"
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("entity-keys")
    project = make_project(root / "project", [], PROJECT)
    (project / "data").mkdir()
    t = dt.datetime(2024, 1, 1)
    pq.write_table(pa.table({"card_id": list(range(CARDS)), "ts": [t] * CARDS,
                             "amount": [float(i) * 1.5 for i in range(CARDS)]}), project / "data" / "spend.parquet")
    pq.write_table(pa.table({"shop": SHOPS, "ts": [t] * len(SHOPS), "risk": [0.1, 0.7, -0.4, 2.0]}),
                   project / "data" / "shops.parquet")
    with DaemonProcess(root / "home", project) as d:
        for view in ("spend", "shops"):
            assert d.wait_job(d.post(f"/features/{view}/materialize").json()["id"])["state"] == "succeeded"
        d.model_path = linear_model(root / "m.onnx", seed=3, n_features=3)
        d.register_model("fraud", d.model_path)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while d.get("/deployments/scored").json()["state"] != "ready":
            assert time.monotonic() < deadline, d.get("/deployments/scored").text
            time.sleep(0.05)
        d.client = triton.InferenceServerClient(url=f"127.0.0.1:{d.info['ports']['serving']}")
        yield d


def inputs(cards, shops, amounts, binary: bool) -> list:
    out = []
    for name, dtype, values in (("card_id", "INT64", np.array(cards, np.int64)),
                                ("shop", "BYTES", np.array(shops, dtype=object)),
                                ("amount_now", "FP32", np.array(amounts, np.float32))):
        inp = triton.InferInput(name, [len(values)], dtype)
        inp.set_data_from_numpy(values, binary_data=binary)
        out.append(inp)
    return out


def expected(d, cards, shops, amounts) -> np.ndarray:
    risk = dict(zip(SHOPS, [0.1, 0.7, -0.4, 2.0], strict=True))
    x = np.array([[c * 1.5, risk[s], a] for c, s, a in zip(cards, shops, amounts, strict=True)], np.float32)
    return reference(d.model_path, x)["probability"]


def test_binary_entity_keys_answer_as_json_ones_do(box):
    cards, shops, amounts = [3, 17, 42, 3], ["bolt", "acme", "dune", "cobalt"], [12.5, 0.0, 99.0, 7.25]
    want = expected(box, cards, shops, amounts)
    binary = box.client.infer("scored", inputs(cards, shops, amounts, binary=True))
    as_json = box.client.infer("scored", inputs(cards, shops, amounts, binary=False),
                               outputs=[triton.InferRequestedOutput("probability", binary_data=False)])
    np.testing.assert_allclose(binary.as_numpy("probability"), want, rtol=1e-6)
    np.testing.assert_array_equal(binary.as_numpy("probability"), as_json.as_numpy("probability"))
    # Mixed: keys binary, the direct input as JSON.
    mixed = inputs(cards, shops, amounts, binary=True)
    mixed[2].set_data_from_numpy(np.array(amounts, np.float32), binary_data=False)
    np.testing.assert_array_equal(box.client.infer("scored", mixed).as_numpy("probability"),
                                  binary.as_numpy("probability"))


def test_a_bad_binary_entity_key_is_a_400_naming_it(box):
    url = f"http://127.0.0.1:{box.info['ports']['serving']}/v2/models/scored/infer"
    head = (b'{"inputs":[{"name":"card_id","datatype":"INT64","shape":[2],"parameters":{"binary_data_size":12}},'
            b'{"name":"shop","datatype":"BYTES","shape":[2],"data":["acme","bolt"]},'
            b'{"name":"amount_now","datatype":"FP32","shape":[2],"data":[1,2]}]}')
    r = httpx.post(url, content=head + b"\0" * 12, headers={"inference-header-content-length": str(len(head)),
                                                            "content-type": "application/octet-stream"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == ("input 'card_id': shape [2] of INT64 needs 16 bytes, but binary_data_size is 12")
    big = [triton.InferInput("card_id", [70_000], "INT64"), *inputs([1], ["acme"], [1.0], True)[1:]]
    big[0].set_data_from_numpy(np.zeros(70_000, np.int64))
    with pytest.raises(triton.InferenceServerException, match="70000 rows exceed the maximum of 65536"):
        box.client.infer("scored", big)


def test_model_metadata_lists_the_entity_key_inputs(box):
    meta = box.client.get_model_metadata("scored")
    assert meta["inputs"] == [{"name": "card_id", "datatype": "INT64", "shape": [-1]},
                              {"name": "shop", "datatype": "BYTES", "shape": [-1]},
                              {"name": "amount_now", "datatype": "FP32", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["probability", "logit"]


def triton_stats():
    """Triton's own ModelStatisticsResponse message: its JSON form is what ``/stats`` must parse as. The grpc
    package is not installed, so the generated module is loaded without tritonclient.grpc's __init__."""
    package = types.ModuleType("tritonclient.grpc")
    package.__path__ = [os.path.join(os.path.dirname(triton.__file__), os.pardir, "grpc")]
    saved = sys.modules.get("tritonclient.grpc")
    sys.modules["tritonclient.grpc"] = package
    try:
        from tritonclient.grpc import service_pb2
    finally:
        if saved is not None:
            sys.modules["tritonclient.grpc"] = saved
        else:
            del sys.modules["tritonclient.grpc"]
    return service_pb2.ModelStatisticsResponse


def test_stats_answer_in_tritons_shape(box):
    from google.protobuf import json_format

    assert "statistics" in box.client.get_server_metadata()["extensions"]
    before = box.client.get_inference_statistics("scored")
    for n in (1, 2, 5):
        box.client.infer("scored", inputs(list(range(n)), ["acme"] * n, [1.0] * n, binary=True))
    stats = box.client.get_inference_statistics("scored")
    parsed = json_format.ParseDict(stats, triton_stats()())  # unknown fields or wrong types raise
    [model] = parsed.model_stats
    [old] = before["model_stats"]
    assert (model.name, model.version) == ("scored", "1")
    assert model.inference_count - old["inference_count"] == 8
    assert model.inference_stats.success.count - old["inference_stats"]["success"]["count"] == 3
    assert model.execution_count - old["execution_count"] == 3
    assert model.inference_stats.compute_infer.ns > old["inference_stats"]["compute_infer"]["ns"]
    assert abs(model.last_inference / 1000 - time.time()) < 60
    sizes = {b.batch_size: b.compute_infer.count for b in model.batch_stats}
    assert sizes[5] >= 1 and sizes[2] >= 1
    everything = box.client.get_inference_statistics()
    assert [m["name"] for m in json_format.MessageToDict(
        json_format.ParseDict(everything, triton_stats()()))["modelStats"]] == ["scored"]
    with pytest.raises(triton.InferenceServerException, match="unknown model 'nosuch'"):
        box.client.get_inference_statistics("nosuch")


def test_the_example_request_types_each_entity_key_as_the_online_store_holds_it(box):
    """`deployments show` prints a request to copy: an integer card id goes as INT64, a shop name as BYTES."""
    example = box.get("/deployments/scored").json()["example_request"]
    types = {i["name"]: i["datatype"] for i in example["inputs"]}
    assert types["card_id"] == "INT64" and types["shop"] == "BYTES", example
    for item in example["inputs"]:  # the placeholders, made real: a card and a shop the store knows
        if item["name"] == "shop":
            item["data"] = [SHOPS[0]]
    r = httpx.post(f"http://127.0.0.1:{box.info['ports']['serving']}/v2/models/scored/infer", json=example)
    assert r.status_code == 200, r.text
