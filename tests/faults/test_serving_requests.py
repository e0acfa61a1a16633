"""Requests that cost the server far more than they cost the client: refused before any work, or done where
they hold no one else up."""

from __future__ import annotations

import datetime as dt
import threading
import time

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from conftest import make_project
from serving_models import linear_model

from appliance.testing import DaemonProcess
from faults.harness import serving_address

CARDS = 1000
ONLINE = """
[serving]
port = 0

[entities.card]
join_keys = ["card_id"]

[feature_views.spend]
source = "data/transactions.parquet"
entities = ["card"]
event_time = "ts"
features = ["amount", "fee"]

[deployments.scored]
model = "fraud@champion"
entity_keys = ["card_id"]
features = ["spend:amount", "spend:fee"]
features_input = "features"

[deployments.plain]
model = "fraud@champion"
"""


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """A deployment whose features come from the online store by card id, and a plain one beside it."""
    root = tmp_path_factory.mktemp("serving-online")
    project = make_project(root / "project", [], ONLINE)
    (project / "data").mkdir()
    pq.write_table(pa.table({"card_id": list(range(CARDS)), "ts": [dt.datetime(2024, 1, 1)] * CARDS,
                             "amount": [float(i) for i in range(CARDS)], "fee": [0.5] * CARDS}),
                   project / "data" / "transactions.parquet")
    with DaemonProcess(root / "home", project) as d:
        job = d.wait_job(d.post("/features/spend/materialize").json()["id"])
        assert job["state"] == "succeeded", job
        model = linear_model(root / "m.onnx", seed=1, n_features=2)
        d.register_model("fraud", model)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while {x["state"] for x in d.get("/deployments").json()["deployments"]} != {"ready"}:
            assert time.monotonic() < deadline, d.get("/deployments").text
            time.sleep(0.05)
        yield d


class Steady(threading.Thread):
    """A client sending small inferences through tritonclient, one after another, keeping each latency."""

    def __init__(self, d):
        super().__init__(daemon=True)
        host, port = serving_address(d)
        self.client = triton.InferenceServerClient(url=f"{host}:{port}")
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        inp = triton.InferInput("features", [1, 2], "FP32")
        inp.set_data_from_numpy(np.ones((1, 2), np.float32))
        while not self.stop.is_set():
            t0 = time.perf_counter()
            self.client.infer("plain", [inp])
            self.latencies.append(time.perf_counter() - t0)

    def __enter__(self) -> Steady:
        self.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(30)


def entity_request(rows: int) -> bytes:
    cards = np.arange(rows) % CARDS
    return orjson.dumps({"inputs": [{"name": "card_id", "datatype": "INT64", "shape": [rows],
                                     "data": cards.tolist()}]})


def test_a_million_row_entity_request_is_refused_at_once_and_no_one_waits(online):
    host, port = serving_address(online)
    body = entity_request(1_000_000)
    with Steady(online) as steady:
        t0 = time.perf_counter()
        r = httpx.post(f"http://{host}:{port}/v2/models/scored/infer", content=body,
                       headers={"content-type": "application/json"}, timeout=60)
        took = time.perf_counter() - t0
    assert took < 1.0 and max(steady.latencies) < 0.5, (took, max(steady.latencies))
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"] == "input 'card_id': 1000000 rows exceed the maximum of 65536"


def test_a_large_entity_request_within_the_limit_holds_no_one_up(online):
    host, port = serving_address(online)
    body = entity_request(65_536)
    with Steady(online) as steady:
        r = httpx.post(f"http://{host}:{port}/v2/models/scored/infer", content=body,
                       headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["outputs"][0]["shape"] == [65_536, 1]
    assert max(steady.latencies) < 0.2, max(steady.latencies)  # 0.46 s when the loop did the lookup


def feedback(d, body: dict, timeout: float = 60) -> httpx.Response:
    host, port = serving_address(d)
    token = (d.home / "serving" / "feedback-token").read_text().strip()
    return httpx.post(f"http://{host}:{port}/v2/feedback", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {token}"})


def logged(d, request_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p["request_id"] == request_id for p in d.get("/predictions", params={"deployment": "plain"}).json()):
            return True
        time.sleep(0.1)
    return False


def test_a_big_feedback_body_is_bounded_and_the_log_writer_keeps_writing(online):
    host, port = serving_address(online)
    one_row = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
    assert httpx.post(f"http://{host}:{port}/v2/models/plain/infer", json={**one_row, "id": "labelled"}) \
        .status_code == 200
    with Steady(online) as steady:
        t0 = time.perf_counter()
        big = feedback(online, {"request_id": "labelled", "labels": [1] * 300_000})  # 1.8 MB of labels
        refused_in = time.perf_counter() - t0
        # Checked on the loop, then looked up by the log's writer (at background priority: on a busy box its
        # answer takes a few of its quarter-second cycles, where inserting labels one by one took minutes).
        unknown = feedback(online, {"request_id": "never-served", "labels": [0.5] * 60_000})
    assert refused_in < 1 and max(steady.latencies) < 0.5, (refused_in, max(steady.latencies))
    assert big.status_code == 413 and "at most" in big.json()["error"], big.text[:300]
    assert unknown.status_code == 404 and "'never-served'" in unknown.json()["error"], unknown.text[:300]
    # The writer is not stalled: a prediction made now is in the log within a few of its cycles.
    assert httpx.post(f"http://{host}:{port}/v2/models/plain/infer", json={**one_row, "id": "after"}) \
        .status_code == 200
    assert logged(online, "after", timeout=10)
    assert feedback(online, {"request_id": "labelled", "labels": [1]}).status_code == 200
