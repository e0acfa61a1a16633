"""Champion against challenger: a shadow deployment's report puts the two models' answers to the same requests
side by side (agreement, score distributions) and, once labels arrive, their realized metrics, naming the
better one with the command that promotes it."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from conftest import make_project
from serving_models import linear_model, reference
from sklearn.metrics import roc_auc_score

from appliance.testing import DaemonProcess

REQUESTS = 120
PROJECT = """
[serving]
port = 0

[deployments.main]
model = "fraud@champion"
shadow = "challenger"

[deployments.challenger]
model = "fraud:2"

[deployments.alone]
model = "fraud:2"
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("shadow")
    with DaemonProcess(root / "home", make_project(root / "project", [], PROJECT)) as d:
        d.paths = [linear_model(root / f"m{seed}.onnx", seed=seed) for seed in (1, 2)]
        for path in d.paths:
            d.register_model("fraud", path)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        deadline = time.monotonic() + 30
        while {x["state"] for x in d.get("/deployments").json()["deployments"]} != {"ready"}:
            assert time.monotonic() < deadline, d.get("/deployments").text
            time.sleep(0.05)
        url = f"http://127.0.0.1:{d.info['ports']['serving']}/v2/models/main/infer"
        rng = np.random.default_rng(5)
        d.x = rng.normal(size=(REQUESTS, 4)).astype(np.float32)
        d.served = []
        for i, row in enumerate(d.x):
            r = httpx.post(url, json={"id": f"r-{i}", "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 4], "data": row.tolist()}]})
            assert r.status_code == 200, r.text
            d.served.append(r.json()["outputs"][0]["data"][0])
        yield d


def test_a_shadow_report_names_the_better_model_once_labels_arrive(box):
    d = box
    champion = np.array(d.served)
    challenger = reference(d.paths[1], d.x)["probability"][:, 0]
    np.testing.assert_allclose(champion, reference(d.paths[0], d.x)["probability"][:, 0], rtol=1e-6)

    early = d.get("/deployments/main/shadow").json()
    assert (early["pairs"], early["labeled"], early["winner"]) == (REQUESTS, 0, None)
    assert early["agreement"] == pytest.approx(np.mean((champion >= 0.5) == (challenger >= 0.5)))
    assert early["champion"]["scores"]["mean"] == pytest.approx(champion.mean(), rel=1e-6)
    assert early["challenger"]["scores"]["mean"] == pytest.approx(challenger.mean(), rel=1e-6)
    assert sum(early["champion"]["scores"]["histogram"]) == REQUESTS

    # Labels follow the challenger's score, with one in ten flipped: it should win on AUC.
    flip = np.random.default_rng(9).random(REQUESTS) < 0.1
    labels = ((challenger >= 0.5) ^ flip).astype(int)
    r = d.post("/feedback/batch", {"items": [{"request_id": f"r-{i}", "labels": [int(y)]}
                                             for i, y in enumerate(labels)]})
    assert r.status_code == 200 and r.json()["stored_labels"] == REQUESTS, r.text

    report = d.get("/deployments/main/shadow").json()
    assert report["labeled"] == REQUESTS
    want = {"champion": roc_auc_score(labels, champion), "challenger": roc_auc_score(labels, challenger)}
    assert want["challenger"] > want["champion"]
    for side, scores in (("champion", champion), ("challenger", challenger)):
        assert report[side]["metrics"]["auc"] == pytest.approx(want[side], abs=1e-9)
        assert report[side]["metrics"]["accuracy"] == pytest.approx(np.mean((scores >= 0.5) == labels), abs=1e-9)
    assert (report["champion"]["version"], report["challenger"]["version"]) == (1, 2)
    assert report["winner"] == "challenger" and report["gate"]["metric"] == "auc"
    assert report["promote"] == "appliance models promote fraud 2 champion"

    out = d.cli("deployments", "shadow", "main")
    assert out.returncode == 0, out.stderr
    assert f"{REQUESTS} request(s) answered by both" in out.stdout
    auc = next(line.split() for line in out.stdout.splitlines() if line.startswith("auc "))
    assert auc == ["auc", f"{want['champion']:.4f}", f"{want['challenger']:.4f}"]
    assert "the challenger (fraud version 2) wins on auc" in out.stdout
    assert "appliance models promote fraud 2 champion" in out.stdout
    assert json.loads(d.cli("deployments", "shadow", "main", "--json").stdout)["winner"] == "challenger"


def test_a_report_of_a_deployment_without_a_shadow_says_so(box):
    r = box.get("/deployments/alone/shadow")
    assert r.status_code == 400, r.text
    assert "deployment 'alone' has no shadow" in r.json()["error"]["message"]
    out = box.cli("deployments", "shadow", "nosuch")
    assert out.returncode != 0 and "no deployment 'nosuch'" in out.stderr and "Traceback" not in out.stderr
    r = box.get("/deployments/main/shadow", params={"output": "nope"})
    assert r.status_code == 400 and "no output 'nope'" in r.json()["error"]["message"], r.text


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_dashboard_shows_a_deployment_against_its_shadow(box):
    from tui_helpers import settle, table, text_of

    from tui.app import ApplianceApp
    from tui.client import ApiClient

    report = box.get("/deployments/main/shadow").json()
    app = ApplianceApp(ApiClient(box.home), home=box.home, area="serving")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: table(app, "deployments").rows_all)
        deployments = table(app, "deployments")
        deployments.focus()
        deployments.move_cursor(row=[r["name"] for r in deployments.rows_all].index("main"))
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Detail")
        body = str(app.screen.query_one("#detail-body").render())
        assert "Against its shadow challenger" in body, body
        assert f"{report['pairs']} request(s) answered by both" in body
        assert report["verdict"] in " ".join(body.split()), body
        auc = report["champion"]["metrics"] and report["champion"]["metrics"]["auc"]
        assert auc is None or f"{auc:.4f}" in body
        seen = text_of(app)
        assert "Against its shadow" in seen
