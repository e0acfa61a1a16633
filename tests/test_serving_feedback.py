"""Feedback changes what monitoring reports, so it needs a credential: the feedback token on the serving port,
the daemon's token on the control API. Only labels that fit a logged prediction are stored."""

from __future__ import annotations

import json
import time

import duckdb
import httpx
import pytest
from conftest import make_project
from serving_models import N_FEATURES, linear_model

from appliance.testing import DaemonProcess

TOML = '[serving]\nport = 0\n\n[deployments.fraud]\nmodel = "fraud@champion"\n'
ROWS = [[0.1] * N_FEATURES, [0.2] * N_FEATURES]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    project = make_project(root / "project", [], TOML)
    d = DaemonProcess(root / "home", project).start()
    try:
        d.register_model("fraud", linear_model(root / "m.onnx", 1))
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while d.get("/deployments/fraud").json()["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        d.base = f"http://127.0.0.1:{d.info['ports']['serving']}"
        for rid in ("two-rows", "by-cli", "by-api"):
            r = httpx.post(f"{d.base}/v2/models/fraud/infer", json={"id": rid, "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [2, N_FEATURES], "data": ROWS}]})
            assert r.status_code == 200, r.text
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()


def token(d) -> str:
    """The feedback token, as a user gets it (`appliance feedback token`); asked for once."""
    if not hasattr(d, "feedback_token"):
        out = d.cli("feedback", "token")
        assert out.returncode == 0, out.stderr
        d.feedback_token = out.stdout.strip()
    return d.feedback_token


def post(d, body, *, auth: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {auth}"} if auth else {}
    return httpx.post(f"{d.base}/v2/feedback", json=body, headers=headers, **kw)


def test_the_serving_port_takes_feedback_only_with_the_feedback_token(served):
    body = {"request_id": "two-rows", "labels": [1, 0]}
    for auth in (None, "guess", served.token):  # the daemon's own token is not the feedback token
        r = post(served, body, auth=auth)
        assert r.status_code == 401, (auth, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "feedback token" in r.json()["error"]
    assert len(token(served)) >= 32
    assert oct((served.home / "serving" / "feedback-token").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("body, status, words", [
    ({"request_id": "two-rows", "labels": [1e308, 0]}, 400, "label 0 is 1e+308"),
    ({"request_id": "two-rows", "labels": [True, 0]}, 400, "label 0 is True"),
    ({"request_id": "two-rows", "labels": ["1", 0]}, 400, "label 0 is '1'"),
    ({"request_id": "two-rows", "labels": []}, 400, "needs 'label'"),
    ({"labels": [1]}, 400, "needs 'request_id'"),
    ({"request_id": "two-rows", "labels": [1]}, 400, "logged 2 rows: feedback needs one label per row, got 1"),
    ({"request_id": "no-such-request", "labels": [1, 0]}, 404, "no logged prediction has request id 'no-such-request'"),
], ids=["huge", "bool", "text", "none", "no id", "too few", "unknown id"])
def test_feedback_that_is_not_a_label_of_a_logged_prediction_is_refused(served, body, status, words):
    r = post(served, body, auth=token(served))
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_feedback_must_be_json(served):
    r = httpx.post(f"{served.base}/v2/feedback", content=json.dumps({"request_id": "two-rows", "labels": [1, 0]}),
                   headers={"Authorization": f"Bearer {token(served)}", "content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_feedback_with_a_credential_is_stored_from_the_port_the_api_and_the_cli(served):
    r = post(served, {"request_id": "two-rows", "labels": [1, 0]}, auth=token(served))
    assert r.status_code == 200 and r.json() == {"request_id": "two-rows", "labels": 2}
    assert served.post("/feedback", {"request_id": "by-api", "labels": [0, 0]}).json()["labels"] == 2
    refused = served.post("/feedback", {"request_id": "nope", "labels": [1]})
    assert refused.status_code == 404 and "'nope'" in refused.json()["error"]["message"]
    assert httpx.post(f"{served.url}/api/v1/feedback", json={"request_id": "by-api", "labels": [1, 1]}) \
        .status_code == 401
    out = served.cli("feedback", "send", "by-cli", "1", "1")
    assert out.returncode == 0 and "2 label(s) stored" in out.stdout, out.stderr
    metrics = httpx.get(f"{served.base}/metrics").text
    assert "appliance_feedback_stored_labels 6" in metrics and "appliance_feedback_pending_labels 0" in metrics
    served.stop()
    with duckdb.connect(str(served.home / "store.duckdb"), read_only=True) as con:
        stored = con.execute("select request_id, row_index, label from serving.feedback order by all").fetchall()
    assert stored == [("by-api", 0, 0.0), ("by-api", 1, 0.0), ("by-cli", 0, 1.0), ("by-cli", 1, 1.0),
                      ("two-rows", 0, 1.0), ("two-rows", 1, 0.0)]

