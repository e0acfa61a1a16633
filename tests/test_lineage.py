"""A model version's lineage reaches the source rows: the demo's model names the ingest batches behind each
feature-view version it was trained on (their files, content hashes and rows), and a batch approved after its
training set was built is not among them."""

from __future__ import annotations

import json
import time

import blake3
import pytest

from appliance.testing import DaemonProcess
from plugins.demo.project import generator, lay_out


def content_hash(path) -> str:
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo project, three days and one epoch, with a fourth file whose amounts are shifted: the poisoning
    guard holds it, so the nightly pipeline trains without it."""
    root = tmp_path_factory.mktemp("lineage")
    project = root / "project"
    lay_out(project, days=3, per_day=600)
    toml = project / "appliance.toml"
    toml.write_text(toml.read_text().replace("epochs = 8", "epochs = 1"))
    gen = generator()
    shifted = gen.transactions(gen.World(seed=7), start=time.time() - 3600, days=0.5, per_day=1200, seed=99,
                               drift=3.0)
    gen.write_csv(shifted, project / "data" / "transactions" / "day-99.csv")
    with DaemonProcess(root / "home", project) as d:
        run = d.post("/pipelines/nightly/run").json()
        run_id = run.get("id") or run.get("run", {}).get("id")
        deadline = time.monotonic() + 180
        while (detail := d.get(f"/pipelines/nightly/runs/{run_id}").json())["status"] in (
                "queued", "running", "pending") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert detail["status"] == "succeeded", detail
        d.project = project
        yield d


def test_the_lineage_of_a_demo_model_names_the_batches_and_their_file_hashes(demo):
    d = demo
    batches = d.get("/batches", params={"source": "transactions"}).json()
    [held] = [b for b in batches if b["state"] == "held"]
    assert held["file"].endswith("day-99.csv")
    behind = sorted((b for b in batches if b["state"] == "accepted"), key=lambda b: b["id"])
    assert [b["file"].rsplit("/", 1)[-1] for b in behind] == ["day-00.csv", "day-01.csv", "day-02.csv"]

    # Approved after the training set was built, and materialized since: still not behind version 1.
    assert d.cli("batches", "approve", str(held["id"])).returncode == 0
    job = d.post("/features/card_velocity/materialize").json()
    assert d.wait_job(job["id"])["state"] == "succeeded"

    out = d.cli("models", "lineage", "fraud", "1", "--json")
    assert out.returncode == 0, out.stderr
    chain = json.loads(out.stdout)
    assert chain["run"]["spec"] == "fraud" and chain["run"]["state"] == "succeeded"
    ts = d.get("/training-sets/fraud_train").json()
    assert chain["data"]["kind"] == "training_set" and chain["data"]["id"] == ts["id"]
    assert chain["data"]["sha256"] == ts["sha256"]
    assert {v["view"]: v["version"] for v in chain["views"]} == {"card_velocity": 1, "merchant_risk": 1}
    for view in chain["views"]:
        got = [(b["id"], b["file"], b["content_hash"], b["rows"]) for b in view["batches"]]
        want = [(b["id"], b["file"], content_hash(d.project / b["file"]), b["accepted"]) for b in behind]
        assert got == want, view["view"]
        assert held["id"] not in {b["id"] for b in view["batches"]}

    text = d.cli("models", "lineage", "fraud", "1")
    assert text.returncode == 0, text.stderr
    for b in behind:
        line = next(x for x in text.stdout.splitlines() if f"batch {b['id']} " in x)
        assert b["file"] in line and content_hash(d.project / b["file"]) in line and f"{b['accepted']} rows" in line
    assert f"training set {ts['id']} fraud_train" in text.stdout
    assert "day-99.csv" not in text.stdout


def test_lineage_of_an_unknown_version_is_a_404_naming_it(demo):
    r = demo.get("/models/fraud/versions/99/lineage")
    assert r.status_code == 404 and "no version 99" in r.json()["error"]["message"]
    out = demo.cli("models", "lineage", "fraud", "99")
    assert out.returncode != 0 and "Traceback" not in out.stderr and "no version 99" in out.stderr
