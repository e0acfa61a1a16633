"""Models trained elsewhere: a scikit-learn model converted with skl2onnx and a torch model the user exported,
registered from their files, promoted, served to tritonclient with onnxruntime's answers, hot-swapped and held
to their sample for drift; and every kind of bad file refused with a message that names what is wrong."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from conftest import make_project
from onnx import TensorProto, helper, numpy_helper

from appliance.testing import DaemonProcess

N = 4
FEATURES = [f"f{i}" for i in range(N)]
TOML = """
[serving]
port = 0

[deployments.churn]
model = "churn@prod"

[deployments.scorer]
model = "scorer@prod"
"""

RNG = np.random.default_rng(5)
X = RNG.normal(size=(200, N)).astype(np.float32)
Y = (X[:, 0] - X[:, 2] + RNG.normal(scale=0.5, size=200) > 0).astype(np.int64)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    with DaemonProcess(root / "home", make_project(root / "project", [], TOML)) as d:
        d.root = root
        d.serving_port = d.info["ports"]["serving"]
        yield d


def sklearn_model(root: Path, seed: int = 0, c: float = 1.0):
    """A logistic regression, converted as skl2onnx's docs show (without ZipMap, so outputs are tensors)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, random_state=seed).fit(X, Y)
    path = root / f"churn-{seed}-{c}.onnx"
    path.write_bytes(to_onnx(model, X[:1], options={"zipmap": False}, target_opset=17).SerializeToString())
    return model, path


def sample_parquet(root: Path, model) -> Path:
    """Feature columns and the framework's own answers (expected outputs, by output name)."""
    table = {name: X[:, i] for i, name in enumerate(FEATURES)}
    table["label"] = model.predict(X)
    table["probabilities"] = model.predict_proba(X).astype(np.float32).tolist()
    path = root / "churn-sample.parquet"
    pq.write_table(pa.table(table), path)
    return path


def onnxruntime_outputs(path: Path, feeds: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def wait_serving(d, deployment: str, version: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = d.get(f"/deployments/{deployment}").json()
        if dep.get("version") == version and dep.get("state") == "ready":
            return
        time.sleep(0.05)
    raise AssertionError(f"{deployment} never served version {version}: {d.get(f'/deployments/{deployment}').text}")


def upload(d, name: str, model: bytes, sample: tuple[str, bytes] | None = None, **fields) -> httpx.Response:
    files = {"model": ("model.onnx", model, "application/octet-stream")}
    if sample:
        files["sample"] = (*sample, "application/octet-stream")
    return d.http.post(f"/api/v1/models/{name}/versions", files=files, data={k: str(v) for k, v in fields.items()},
                       timeout=60)


# ------------------------------------------------------------------------------------------------ scikit-learn


def test_sklearn_model_registered_from_the_cli_is_promoted_and_serves_onnxruntimes_answers(box):
    model, path = sklearn_model(box.root)
    sample = sample_parquet(box.root, model)
    out = box.cli("models", "register", "churn", str(path), "--sample", str(sample), "--description", "logreg")
    assert out.returncode == 0, out.stderr
    # The signature read from the graph, with the sample's columns as feature names, and the checks' outcome.
    assert "registered churn version 1" in out.stdout
    assert "input  X" in out.stdout and "FP32" in out.stdout and f"features: {', '.join(FEATURES)}" in out.stdout
    assert "output probabilities" in out.stdout and "output label" in out.stdout
    assert "parity on 200 rows against the sample's expected outputs" in out.stdout
    assert "latency: one request p50" in out.stdout
    version = box.get("/models/churn/versions/1").json()
    assert version["signature"]["inputs"] == [{"name": "X", "dtype": "FP32", "shape": [-1, N],
                                               "features": FEATURES}]
    assert version["description"] == "logreg" and version["lineage"]["source"] == "upload"
    assert version["lineage"]["sample"]["parity"]["max_abs_diff"] <= 1e-4

    promoted = box.cli("models", "promote", "churn", "1", "prod")
    assert promoted.returncode == 0, promoted.stderr
    wait_serving(box, "churn", 1)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{box.serving_port}")
    inp = triton.InferInput("X", [20, N], "FP32")
    inp.set_data_from_numpy(X[:20])
    result = client.infer("churn", [inp], outputs=[triton.InferRequestedOutput("probabilities"),
                                                   triton.InferRequestedOutput("label")])
    ref = onnxruntime_outputs(path, {"X": X[:20]})
    np.testing.assert_allclose(result.as_numpy("probabilities"), ref["probabilities"], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(result.as_numpy("label"), ref["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict_proba(X[:20]), atol=1e-5)


def test_a_new_version_hot_swaps_and_the_sample_is_the_drift_reference(box):
    if box.get("/deployments/churn").json().get("version") != 1:
        test_sklearn_model_registered_from_the_cli_is_promoted_and_serves_onnxruntimes_answers(box)
    model, path = sklearn_model(box.root, seed=1, c=0.01)
    r = upload(box, "churn", path.read_bytes(), ("s.parquet", sample_parquet(box.root, model).read_bytes()))
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    assert box.post("/models/churn/aliases/prod", {"version": 2}).status_code == 200
    wait_serving(box, "churn", 2)
    port = box.serving_port
    shifted = X[:100] + np.array([3.0, 0, 0, 0], np.float32)  # f0 moves far from the sample
    r = httpx.post(f"http://127.0.0.1:{port}/v2/models/churn/infer", json={"inputs": [
        {"name": "X", "datatype": "FP32", "shape": list(shifted.shape), "data": shifted.ravel().tolist()}]})
    assert r.status_code == 200 and r.json()["model_version"] == "2"
    drift = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "drift" not in drift:  # the prediction log writes in the background
        drift = box.get("/drift/churn", params={"window_s": 3600}).json()
        time.sleep(0.2)
    assert drift["reference"]["rows"] == 200, drift  # the sample, not a training set the model never had
    columns = {c["column"]: c for c in drift["drift"]["columns"]}
    assert set(columns) == set(FEATURES), drift
    assert columns["f0"]["drifted"] and not columns["f1"]["drifted"]


# ------------------------------------------------------------------------------------------------ torch


def test_torch_model_exported_by_the_user_registers_with_json_rows_and_serves(box, tmp_path):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(N, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Sigmoid())
    net.eval()
    path = tmp_path / "scorer.onnx"
    # The TorchScript exporter: what most existing scripts call, and quicker here than the dynamo one.
    torch.onnx.export(net, (torch.from_numpy(X[:2]),), str(path), input_names=["features"], output_names=["score"],
                      dynamic_axes={"features": {0: "batch"}, "score": {0: "batch"}}, dynamo=False)
    with torch.no_grad():
        expected = net(torch.from_numpy(X[:50])).numpy()
    rows = [{"features": x.tolist(), "score": s.tolist()} for x, s in zip(X[:50], expected, strict=True)]
    r = upload(box, "scorer", path.read_bytes(), ("rows.json", json.dumps(rows).encode()), description="torch")
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["signature"]["inputs"] == [{"name": "features", "dtype": "FP32", "shape": [-1, N]}]
    assert v["checks"]["sample"]["parity"]["against"] == "the sample's expected outputs"
    assert v["checks"]["sample"]["parity"]["max_abs_diff"] <= 1e-4
    assert box.post("/models/scorer/aliases/prod", {"version": 1}).status_code == 200
    wait_serving(box, "scorer", 1)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{box.serving_port}")
    inp = triton.InferInput("features", [7, N], "FP32")
    inp.set_data_from_numpy(X[:7], binary_data=True)
    result = client.infer("scorer", [inp])
    np.testing.assert_allclose(result.as_numpy("score"), onnxruntime_outputs(path, {"features": X[:7]})["score"],
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(result.as_numpy("score"), expected[:7], atol=1e-5)


# ------------------------------------------------------------------------------------------------ bad input


def linear(opset: int = 17, external: Path | None = None) -> bytes:
    w = numpy_helper.from_array(np.ones((N, 1), np.float32), "w")
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N])], outputs, [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if external is not None:
        onnx.save_model(model, str(external), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        return external.read_bytes()
    return model.SerializeToString()


def refused(box, name: str, model: bytes, sample=None, **fields) -> str:
    before = box.get("/models").json()
    r = upload(box, name, model, sample, **fields)
    assert r.status_code == 400, r.text
    assert box.get("/models").json() == before  # nothing registered
    err = r.json()["error"]
    return f"{err['title']}: {err['message']}"


def test_a_file_that_is_not_a_model_is_refused_by_name(box, tmp_path):
    assert "not an ONNX model" in refused(box, "bad", b"I am a CSV file,\n1,2,3\n" * 20)
    assert "not an ONNX model" in refused(box, "bad", b"\x08\x07" + bytes(range(256)))
    assert "empty" in refused(box, "bad", b"")
    out = box.cli("models", "register", "bad", str(tmp_path / "x.onnx"))  # a path that does not exist
    assert out.returncode != 0 and "does not exist" in out.stderr
    (tmp_path / "m.onnx").write_bytes(linear())
    out = box.cli("models", "register", "my model", str(tmp_path / "m.onnx"))
    assert out.returncode != 0 and "model name 'my model': use letters" in out.stderr
    assert "Traceback" not in out.stderr


def test_external_data_unsupported_opsets_and_non_tensor_outputs_are_refused(box, tmp_path):
    msg = refused(box, "bad", linear(external=tmp_path / "m.onnx"))
    assert "External data" in msg and "'w'" in msg and "weights.bin" in msg and "save_as_external_data=False" in msg
    msg = refused(box, "bad", linear(opset=99))
    assert "Unsupported opset" in msg and "opset 99" in msg
    msg = refused(box, "bad", linear(opset=5))
    assert "opset 5" in msg
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    zipped = to_onnx(LogisticRegression().fit(X, Y), X[:1], target_opset=17)  # skl2onnx's default: a ZipMap
    msg = refused(box, "bad", zipped.SerializeToString())
    assert "output 'output_probability' is a sequence, not a tensor" in msg and "'zipmap': False" in msg


def test_a_sample_that_does_not_match_the_signature_is_refused_naming_the_mismatch(box):
    model = linear()
    three = pa.table({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [3.0, 4.0]})
    buf = pa.BufferOutputStream()
    pq.write_table(three, buf)
    msg = refused(box, "bad", model, ("s.parquet", buf.getvalue().to_pybytes()))
    assert "input 'x' takes 4 values per row, but the sample has 3 feature column(s): 'a', 'b', 'c'" in msg
    rows = json.dumps([{"x": [1.0, 2.0, 3.0, 4.0], "z": 1}]).encode()
    msg = refused(box, "bad", model, ("s.json", rows))
    assert "sample column(s) 'z' match no input or output" in msg and "'x' (FP32 [-1, 4])" in msg
    rows = json.dumps([{"x": [1.0, 2.0]}]).encode()
    assert "has rows of shape [2]; the input takes shape [-1, 4]" in refused(box, "bad", model, ("s.json", rows))
    rows = json.dumps([{"x": ["a", "b", "c", "d"]}]).encode()
    assert "cannot be read as FP32" in refused(box, "bad", model, ("s.json", rows))
    assert "neither Parquet nor JSON rows" in refused(box, "bad", model, ("s.txt", b"f0,f1\n1,2\n"))
    rows = json.dumps([{"x": [1.0] * N, "y": [3.0]}]).encode()  # the model answers 4.0
    msg = refused(box, "bad", model, ("s.json", rows))
    assert "Parity check failed" in msg and "output 'y' differs from the sample's expected outputs by up to 1" in msg
    assert upload(box, "good", model, ("s.json", rows), tolerance=1.5).status_code == 201


def test_an_upload_over_the_configured_limit_is_refused_and_a_bad_limit_stops_the_start(tmp_path):
    project = make_project(tmp_path / "project", [], "[registry]\nmax_upload_mb = 0.001\n")
    with DaemonProcess(tmp_path / "home", project) as d:
        r = upload(d, "big", linear() + b"\0" * 2048)
        assert r.status_code == 413 and "kB; [registry] max_upload_mb allows 1.0 kB" in r.json()["error"]["message"]
        assert upload(d, "small", linear()).status_code == 201
    (project / "appliance.toml").write_text('[registry]\nmax_upload_mb = "lots"\n')
    with pytest.raises(RuntimeError, match="registry.max_upload_mb: expected a number of megabytes > 0"):
        DaemonProcess(tmp_path / "home2", project).start()


def test_inputs_the_model_imputes_are_named_at_register_and_checked(box):
    """--nullable INPUT marks an input as taking null (shown in the signature); a name the graph lacks is
    refused naming the inputs it has."""
    r = upload(box, "imputed", linear(), nullable="x")
    assert r.status_code == 201, r.text
    assert [i.get("nullable") for i in r.json()["signature"]["inputs"]] == [True]
    r = upload(box, "imputed", linear(), nullable="x,nope")
    assert r.status_code == 400 and "the model has no input 'nope'; its inputs are x" in r.json()["error"]["message"]


def test_a_model_larger_than_the_control_apis_usual_body_limit_registers(box, tmp_path):
    """Real models are often tens of MB: the upload route takes up to [registry] max_upload_mb, not the 16 MB
    every other control-API body is held to."""
    from serving_models import linear_model

    big = linear_model(tmp_path / "big.onnx", seed=3, n_features=5_000_000)  # 20 MB of weights
    assert big.stat().st_size > 16 * 1024 * 1024
    version = box.register_model("wide", big)
    assert version["version"] == 1
    assert box.get("/models/wide/versions/1").status_code == 200


def test_a_registered_model_exports_to_a_triton_repository_triton_can_read(box, tmp_path):
    import importlib.util

    import tritonclient
    from google.protobuf import text_format

    if not box.get("/models").json() or "churn" not in {m["name"] for m in box.get("/models").json()}:
        test_sklearn_model_registered_from_the_cli_is_promoted_and_serves_onnxruntimes_answers(box)
    out = box.cli("models", "export", "churn@1", "--triton", str(tmp_path / "repo"))
    assert out.returncode == 0, out.stderr
    spec = importlib.util.spec_from_file_location(
        "triton_model_config_pb2", Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py")
    pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb2)
    config = text_format.Parse((tmp_path / "repo" / "churn" / "config.pbtxt").read_text(), pb2.ModelConfig())
    outputs = {o.name: o for o in config.output}
    # skl2onnx's label is one value per row, [batch]: Triton wants dims [1], reshaped to no dims.
    assert list(outputs["label"].dims) == [1] and list(outputs["label"].reshape.shape) == []
    assert list(outputs["probabilities"].dims) == [2] and not outputs["probabilities"].HasField("reshape")
    assert list(config.input[0].dims) == [N]


def test_every_datatype_a_registered_model_can_take_exports_to_triton(box, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT16),
         helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1, axes=[1])], "g",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    assert upload(box, "pixels", model.SerializeToString()).status_code == 201
    out = box.cli("models", "export", "pixels", "--triton", str(tmp_path / "repo"))
    assert out.returncode == 0, out.stderr
    config = (tmp_path / "repo" / "pixels" / "config.pbtxt").read_text()
    assert "data_type: TYPE_UINT8" in config and "data_type: TYPE_FP16" in config
