"""Serving over the Open Inference Protocol, checked with NVIDIA's own tritonclient against a real daemon."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import make_project, threads_of
from prometheus_client.parser import text_string_to_metric_families
from serving_models import N_FEATURES, broken_model, linear_model, reference
from tritonclient.utils import InferenceServerException

from appliance.testing import DaemonProcess
from appliance.threads import BACKGROUND_NICE

TOML = """
[serving]
port = 0
max_body_mb = 1

[deployments.fraud]
model = "fraud@champion"

[deployments.batched]
model = "fraud@champion"
max_batch_size = 64
max_queue_delay_us = 5000

[deployments.live]
model = "fraud@champion"
shadow = "challenger"

[deployments.challenger]
model = "fraud:2"
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    project = make_project(root / "project", [], TOML)
    models = {v: linear_model(root / f"v{v}.onnx", seed=v) for v in (1, 2)}
    with DaemonProcess(root / "home", project) as d:
        for v in (1, 2):
            d.register_model("fraud", models[v])
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        d.serving_port = d.info["ports"]["serving"]
        d.models = models
        d.root = root
        wait_ready(d, "fraud", version=1)
        wait_ready(d, "batched", version=1)
        wait_ready(d, "challenger", version=2)
        yield d


def wait_ready(d, name, version, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.get(f"/deployments/{name}")
        if r.status_code == 200 and r.json()["version"] == version and r.json()["state"] == "ready":
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"{name} never served version {version}: {d.get(f'/deployments/{name}').text}")


def url(d, path=""):
    return f"http://127.0.0.1:{d.serving_port}{path}"


def body(x, **extra):
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
            **extra}


X = np.random.default_rng(7).normal(size=(5, N_FEATURES)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- tritonclient


def test_tritonclient_health_and_metadata(served):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{served.serving_port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("fraud")
    assert client.is_model_ready("fraud", model_version="1")
    assert not client.is_model_ready("fraud", model_version="7")
    meta = client.get_model_metadata("fraud")
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    assert {o["name"] for o in meta["outputs"]} == {"probability", "logit"}
    assert meta["versions"] == ["1"]
    assert client.get_server_metadata()["name"] == "appliance"


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_infer_equals_onnxruntime_in_process(served, binary):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{served.serving_port}")
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probability", binary_data=binary),
               triton.InferRequestedOutput("logit", binary_data=binary)]
    result = client.infer("fraud", [inp], outputs=outputs, request_id="req-1")
    ref = reference(served.models[1], X)
    np.testing.assert_allclose(result.as_numpy("probability"), ref["probability"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(result.as_numpy("logit"), ref["logit"], rtol=0, atol=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("fraud", "1", "req-1")


def test_tritonclient_default_binary_everything(served):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{served.serving_port}")
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("fraud", [inp], model_version="1")
    np.testing.assert_allclose(result.as_numpy("probability"), reference(served.models[1], X)["probability"],
                               atol=1e-7)


def test_tritonclient_sees_errors_as_messages(served):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{served.serving_port}")
    inp = triton.InferInput("features", [2, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("fraud", [inp])
    assert "expected shape [-1, 4], got [2, 3]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer("nope", [inp])
    assert err.value.status() == "404"


# ------------------------------------------------------------------------------------------------- bad input

BAD = [
    ("wrong shape", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
     400, "input 'features': expected shape [-1, 4], got [1, 3]"),
    ("wrong dtype", lambda: {"inputs": [{"name": "features", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
     400, "input 'features': expected datatype FP32, got 'INT64'"),
    ("missing input", lambda: {"inputs": []}, 400, "non-empty 'inputs'"),
    ("unknown input", lambda: {"inputs": [{"name": "feats", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
     400, "unknown input 'feats'; the model takes: features (FP32 [-1, 4])"),
    ("length mismatch", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4]}]},
     400, "input 'features': shape [2, 4] needs 8 values, got 4"),
    ("huge declared shape", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [10**12, 4],
                                                 "data": [1, 2, 3, 4]}]},
     400, "input 'features': batch of 1000000000000 exceeds the maximum"),
    ("strings as floats", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                                               "data": ["a", "b", "c", "d"]}]},
     400, "input 'features': expected FP32 values, got 'a'"),
    ("null among floats", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                                               "data": [1, None, 3, 4]}]},
     400, "input 'features': value at flat index 1 is null (missing), and this model does not impute missing "
          "values of this input"),
    ("beyond float32", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                                            "data": [1, 2, 1e39, 4]}]},
     400, "input 'features': value at flat index 2 is inf; inputs must be finite"),
    ("beyond float32 in a large request", lambda: {"inputs": [{"name": "features", "datatype": "FP32",
                                                               "shape": [1100, 4], "data": [1.0] * 4000 + [1e39] * 400}]},
     400, "input 'features': value at flat index 4000 is inf; inputs must be finite"),
    ("negative dim", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4], "data": []}]},
     400, "'shape' must be a list of non-negative integers"),
    ("true as a dim", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [True, 4],
                                           "data": [1, 2, 3, 4]}]},
     400, "'shape' must be a list of non-negative integers, got [True, 4]"),
    ("shape as text", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": "1x4", "data": [1]}]},
     400, "'shape' must be a list of non-negative integers, got '1x4'"),
    ("wrong rank", lambda: {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4, 1],
                                        "data": [1, 2, 3, 4]}]},
     400, "input 'features': expected shape [-1, 4], got [1, 4, 1]"),
]


@pytest.mark.parametrize("case, make, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_json_requests_get_precise_4xx_and_the_next_request_works(served, case, make, status, message):
    r = httpx.post(url(served, "/v2/models/fraud/infer"), json=make())
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    ok = httpx.post(url(served, "/v2/models/fraud/infer"), json=body(X))
    assert ok.status_code == 200


@pytest.mark.parametrize("rows", [1000, 1500])  # 4,000 values take the small-request path, 6,000 the large one
def test_a_large_json_request_matches_onnxruntime(served, rows):
    x = np.random.default_rng(rows).normal(size=(rows, N_FEATURES))
    r = httpx.post(url(served, "/v2/models/fraud/infer"), json=body(x))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    np.testing.assert_allclose(np.array(out["probability"]["data"]).reshape(-1, 1),
                               reference(served.models[1], x.astype(np.float32))["probability"], atol=1e-6)


def test_raw_body_faults(served):
    infer = url(served, "/v2/models/fraud/infer")
    cases = [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [NaN, 1, 2, 3]}]}', {},
         400, "NaN and Infinity are not JSON"),
        (b"[" * 5000 + b"]" * 5000, {}, 400, "nested too deeply"),
        (json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                                 "data": [[[[[[1]]]]], 2, 3, 4]}]}).encode(), {}, 400, "nested deeper than its shape"),
        (b"\x80\x04\x95pickled", {"content-type": "application/python-pickle"}, 415, "is not read here"),
        (b"x" * (2 * 1024 * 1024), {}, 413, "exceeds the limit"),
    ]
    for content, headers, status, message in cases:
        r = httpx.post(infer, content=content, headers=headers)
        assert r.status_code == status, (message, r.text[:200])
        assert message in r.json()["error"]
        assert httpx.post(infer, json=body(X)).status_code == 200
    # A content type with parameters or in other case is still JSON.
    spelled = httpx.post(infer, content=json.dumps(body(X)).encode(),
                         headers={"content-type": "Application/JSON; charset=utf-8"})
    assert spelled.status_code == 200, spelled.text


def test_binary_faults_are_checked_before_allocating(served):
    infer = url(served, "/v2/models/fraud/infer")

    def binary_request(shape, size, payload):
        head = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": shape,
                                       "parameters": {"binary_data_size": size}}]}).encode()
        return httpx.post(infer, content=head + payload, headers={"Inference-Header-Content-Length": str(len(head))})

    r = binary_request([50_000, 4], 16, b"\0" * 16)
    assert r.status_code == 400 and "needs 800000 bytes, but binary_data_size is 16" in r.json()["error"]
    r = binary_request([1, 4], 16, b"\0" * 8)
    assert r.status_code == 400 and "runs past the end of the body" in r.json()["error"]
    r = binary_request([1, 4], 16, b"\0" * 20)
    assert r.status_code == 400 and "4 bytes of binary data no input claims" in r.json()["error"]
    nan = np.array([[np.nan, 0, 0, 0]], np.float32).tobytes()
    r = binary_request([1, 4], 16, nan)
    assert r.status_code == 400 and "input 'features': value at flat index 0 is NaN (missing)" in r.json()["error"]
    r = httpx.post(infer, content=b"{}", headers={"Inference-Header-Content-Length": "999"})
    assert r.status_code == 400
    ok = binary_request([1, 4], 16, np.ones((1, 4), np.float32).tobytes())
    assert ok.status_code == 200


def test_unknown_routes_and_methods(served):
    assert httpx.get(url(served, "/v2/models/nope")).status_code == 404
    assert httpx.get(url(served, "/v2/models/fraud/infer")).status_code == 405
    assert httpx.get(url(served, "/elsewhere")).status_code == 404
    assert httpx.get(url(served, "/v2/models/fraud/versions/9")).status_code == 404


# ------------------------------------------------------------------------------------------------- live behaviour


def test_dynamic_batching_merges_concurrent_requests_and_splits_answers(served):
    rows = [np.random.default_rng(i).normal(size=(1 + i % 3, N_FEATURES)).astype(np.float32) for i in range(32)]
    results = [None] * len(rows)

    def call(i):
        with httpx.Client() as c:
            results[i] = c.post(url(served, "/v2/models/batched/infer"), json=body(rows[i], id=f"b{i}"))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert r.json()["id"] == f"b{i}"
        np.testing.assert_allclose(np.array(out["probability"]["data"]).reshape(-1, 1),
                                   reference(served.models[1], rows[i])["probability"], atol=1e-6)
    metrics = {s.name + str(s.labels.get("le", "")): s.value
               for fam in text_string_to_metric_families(httpx.get(url(served, "/metrics")).text)
               for s in fam.samples if s.labels.get("model") == "batched"}
    executions = metrics["nv_inference_exec_count_total"]
    assert metrics["nv_inference_count_total"] >= sum(len(r) for r in rows)
    assert executions < len(rows)  # at least some requests shared a model execution
    # A batch is logged in one append: each request's rows still land under its own id, in order, with its own
    # inputs and outputs.
    deadline, logged = time.monotonic() + 10, {}
    while time.monotonic() < deadline and len(logged) < sum(len(r) for r in rows):
        logged = {(p["request_id"], p["row_index"]): p for p in served.get(
            "/predictions", params={"deployment": "batched", "limit": 10_000}).json() if p["request_id"][:1] == "b"}
        time.sleep(0.1)
    assert len(logged) == sum(len(r) for r in rows)
    for i, x in enumerate(rows):
        want = reference(served.models[1], x)["probability"]
        for j in range(len(x)):
            entry = logged[(f"b{i}", j)]
            assert json.loads(entry["inputs"])["features"] == pytest.approx(x[j].tolist())
            assert json.loads(entry["outputs"])["probability"] == pytest.approx(want[j].tolist(), abs=1e-6)


def test_metrics_parse_with_prometheus_own_parser(served):
    httpx.post(url(served, "/v2/models/fraud/infer"), json=body(X))
    httpx.post(url(served, "/v2/models/fraud/infer"), json={"inputs": []})
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(url(served, "/metrics")).text)}
    for name in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                 "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_model_ready", "appliance_inference_request_duration_seconds", "appliance_inference_batch_size",
                 "appliance_prediction_log_written_rows", "appliance_prediction_log_dropped_requests",
                 "appliance_prediction_log_pending_requests"):
        assert name in families, name
    # Nothing was dropped from the prediction log (a drop would also raise an alert).
    assert [s.value for s in families["appliance_prediction_log_dropped_requests"].samples] == [0]
    ok = [s for s in families["nv_inference_request_success"].samples if s.labels["model"] == "fraud"]
    assert ok and ok[0].value >= 1
    hist = families["appliance_inference_request_duration_seconds"]
    assert any(s.name.endswith("_bucket") and s.labels["le"] == "+Inf" for s in hist.samples)


def test_prediction_log_and_feedback(served):
    r = httpx.post(url(served, "/v2/models/fraud/infer"), json=body(X[:2], id="logged-1"))
    assert r.status_code == 200
    auth = {"Authorization": "Bearer " + served.get("/feedback/token").json()["token"]}
    fb = httpx.post(url(served, "/v2/feedback"), json={"request_id": "logged-1", "labels": [1, 0]}, headers=auth)
    assert fb.status_code == 200, fb.text
    assert httpx.post(url(served, "/v2/feedback"), json={"labels": [1]}, headers=auth).status_code == 400
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [p for p in served.get("/predictions", params={"deployment": "fraud", "limit": 1000}).json()
                  if p["request_id"] == "logged-1"]
        if len(logged) == 2:
            break
        time.sleep(0.1)
    assert sorted(p["row_index"] for p in logged) == [0, 1]
    row0 = next(p for p in logged if p["row_index"] == 0)
    assert json.loads(row0["inputs"])["features"] == pytest.approx(X[0].tolist())
    assert row0["version"] == 1 and row0["shadow"] is False and row0["latency_us"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_serving_keeps_its_priority_while_the_log_and_duckdb_run_in_the_background(served):
    """The serving thread competes for the CPU at normal priority; the log's inserts (its writer and DuckDB's
    workers) run at background priority, so on a busy box they wait for serving instead of the other way round."""
    threads = threads_of(served.proc.pid)
    by_name: dict[str, set[int]] = {}
    for name, nice in threads.values():
        by_name.setdefault(name, set()).add(nice)
    assert by_name.get("serving") == {0}, by_name
    assert by_name.get("prediction-log") == {BACKGROUND_NICE}, by_name
    assert by_name.get("duckdb") == {BACKGROUND_NICE}, by_name


def test_shadow_deployment_answers_are_logged_never_returned(served):
    r = httpx.post(url(served, "/v2/models/live/infer"), json=body(X[:1], id="shadowed-1"))
    assert r.status_code == 200
    assert r.json()["model_version"] == "1"  # the live answer, from the champion
    deadline = time.monotonic() + 10
    shadow = []
    while time.monotonic() < deadline and not shadow:
        shadow = [p for p in served.get("/predictions", params={"deployment": "challenger"}).json()
                  if p["request_id"] == "shadowed-1"]
        time.sleep(0.1)
    assert shadow and shadow[0]["shadow"] is True and shadow[0]["version"] == 2
    expected = reference(served.models[2], X[:1])["probability"][0][0]
    assert json.loads(shadow[0]["outputs"])["probability"][0] == pytest.approx(float(expected), abs=1e-6)


def test_hot_swap_under_load_drops_nothing_and_a_corrupt_version_leaves_the_old_serving(served):
    d = served
    stop = threading.Event()
    seen: list[tuple[int, str]] = []

    def load():
        with httpx.Client() as c:
            while not stop.is_set():
                r = c.post(url(d, "/v2/models/fraud/infer"), json=body(X[:1]))
                seen.append((r.status_code, r.json().get("model_version", r.text)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert d.post("/models/fraud/aliases/champion", {"version": 2}).status_code == 200
    wait_ready(d, "fraud", version=2)
    time.sleep(0.5)
    # A version whose file went bad on disk after it was registered (the register path refuses a bad file).
    good = d.register_model("fraud", linear_model(d.root / "v3.onnx", seed=3))
    v3, digest = good["version"], good["onnx_sha256"]
    broken_model(d.home / "artifacts" / digest[:2] / digest)
    assert d.post("/models/fraud/aliases/champion", {"version": v3}).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [e for e in d.events(type="deployment.load_failed")
                                               if e["data"]["deployment"] == "fraud"]:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    statuses = {s for s, _ in seen}
    versions = [v for _, v in seen]
    assert statuses == {200}, [x for x in seen if x[0] != 200][:3]
    assert set(versions) == {"1", "2"}
    assert versions[-1] == "2"
    first_two = versions.index("2")
    assert "1" not in versions[first_two + 50:]  # once swapped, new requests get the new version
    dep = d.get("/deployments/fraud").json()
    assert (dep["version"], dep["state"]) == (2, "ready")
    alerts = [e for e in d.events(type="alert.raised") if e["subject"] == "deployment:fraud"]
    assert alerts and "version 2 keeps serving" in alerts[-1]["data"]["message"]
    assert d.post("/models/fraud/aliases/champion", {"version": 2}).status_code == 200


def test_http_edges_pipelining_chunked_continue_and_garbage(served):
    import socket

    body_of = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [0.5, 0.1, -0.2, 0.3]}]}
    body = json.dumps(body_of).encode()

    def exchange(raw: bytes, expect_responses: int) -> bytes:
        with socket.create_connection(("127.0.0.1", served.serving_port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while data.count(b"HTTP/1.1 ") < expect_responses or not data.endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    req = (b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    two = exchange(req + req, 2)  # pipelined: two answers, in order
    assert two.count(b"HTTP/1.1 200 OK") == 2

    def infer(model: str, rid: str) -> bytes:
        b = json.dumps({**body_of, "id": rid}).encode()
        return b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n%s" % (
            model.encode(), len(b), b)

    # The batched answers come later (their batch waits up to 5 ms), the plain one at once: still sent in order.
    mixed = exchange(infer("batched", "first") + infer("fraud", "second") + infer("batched", "third"), 3)
    assert mixed.count(b"HTTP/1.1 200 OK") == 3
    assert mixed.index(b'"first"') < mixed.index(b'"second"') < mixed.index(b'"third"')
    chunked = (b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(body[:10]) + body[:10] + b"\r\n" + b"%x\r\n" % len(body[10:]) + body[10:]
               + b"\r\n0\r\n\r\n")
    assert exchange(chunked, 1).startswith(b"HTTP/1.1 200 OK")
    cont = (b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n"
            % len(body)) + body
    answer = exchange(cont, 2)
    assert answer.startswith(b"HTTP/1.1 100 Continue") and b"HTTP/1.1 200 OK" in answer
    garbage = exchange(b"NOT HTTP AT ALL\r\n\r\n", 1)
    assert garbage.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in garbage
    assert httpx.post(url(served, "/v2/models/fraud/infer"), json=body_of).status_code == 200


def test_unload_frees_the_deployment_and_the_cli_lists(served):
    out = served.cli("deployments", "--json")
    assert out.returncode == 0, out.stderr
    names = {x["name"]: x for x in json.loads(out.stdout)["deployments"]}
    assert names["fraud"]["provider"] == "CPUExecutionProvider"
    assert served.post("/deployments/batched/unload").status_code == 200
    assert httpx.post(url(served, "/v2/models/batched/infer"), json=body(X)).status_code == 404
    assert "batched" not in {x["name"] for x in served.get("/deployments").json()["deployments"]}


def test_a_prediction_log_that_cannot_keep_up_raises_an_alert_and_every_request_is_answered(tmp_path):
    toml = '[serving]\nport = 0\nlog_max_pending = 1\n\n[deployments.fraud]\nmodel = "fraud@champion"\n'
    project = make_project(tmp_path / "project", [], toml)
    with DaemonProcess(tmp_path / "home", project) as d:
        d.register_model("fraud", linear_model(tmp_path / "m.onnx", seed=1))
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        d.serving_port = d.info["ports"]["serving"]
        wait_ready(d, "fraud", version=1)
        with httpx.Client() as client:  # far more than one request a quarter second: the log leaves some out
            answers = [client.post(url(d, "/v2/models/fraud/infer"), json=body(X[:1])) for _ in range(50)]
        assert all(r.status_code == 200 for r in answers)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alerts = [e for e in d.events("alert.raised") if e["data"].get("rule") == "prediction_log_dropping"]
            if alerts:
                break
            time.sleep(0.1)
        assert alerts, "no alert for a prediction log that drops requests"
        assert alerts[0]["subject"] == "serving:prediction-log"
        assert "left out" in alerts[0]["data"]["message"] and "answers were sent" in alerts[0]["data"]["message"]
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(url(d, "/metrics")).text)}
        dropped = families["appliance_prediction_log_dropped_requests"].samples[0].value
        assert 0 < dropped < 50


def test_bad_deployment_config_names_the_key(tmp_path):
    project = make_project(tmp_path / "p", [], '[serving]\nport = 0\n\n[deployments.x]\nmodel = "fraud"\n')
    d = DaemonProcess(tmp_path / "home", project)
    with pytest.raises(RuntimeError) as err:
        d.start(timeout=20)
    assert "appliance.toml:5: deployments.x.model: expected MODEL@ALIAS or MODEL:VERSION, got 'fraud'" in str(err.value)


@pytest.mark.parametrize("toml, words", [
    ("[serving]\nmax_body_mb = 16\nmax_buffered_mb = 8\n", "serving.max_buffered_mb: must be at least max_body_mb"),
    ("[serving]\nheader_timeout_s = 0\n", "serving.header_timeout_s: expected an integer from 1 to 86400, got 0"),
    ("[serving]\nmax_connections = true\n", "serving.max_connections: expected an integer"),
    ("[serving]\nfeedback_max_pending = -1\n", "serving.feedback_max_pending: expected an integer"),
])
def test_serving_limits_are_checked_by_name(tmp_path, toml, words):
    from appliance import ConfigError
    from appliance.config import load
    from plugins.serving import settings

    (tmp_path / "appliance.toml").write_text(toml)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        settings.read(load(tmp_path))


def test_serving_limits_default_and_follow_the_body_limit(tmp_path):
    from appliance.config import load
    from plugins.serving import settings

    (tmp_path / "appliance.toml").write_text("[serving]\nmax_body_mb = 8\nidle_timeout_s = 5\n")
    limits = settings.read(load(tmp_path)).limits
    assert (limits.max_body, limits.max_buffered, limits.idle_timeout_s) == (8 << 20, 32 << 20, 5)
    assert (limits.max_connections, limits.header_timeout_s, limits.body_timeout_s) == (1024, 10, 30)
