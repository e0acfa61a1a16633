"""Pipelines with the real ingest plugin: re-running a failed pipeline does not load a file twice, and a new
batch ingested (the ``ingest.batch`` event) triggers a pipeline once per burst."""

from __future__ import annotations

import time

from conftest import make_project
from test_pipelines import pipeline, step, wait_run

from appliance.testing import DaemonProcess


def test_rerun_with_real_ingest_step_and_ingest_trigger(tmp_path):
    root = tmp_path
    data = root / "project" / "data"
    toml = ('[ingest]\ndata_dirs = ["data"]\n\n[sources.orders]\nkind = "csv"\nglob = "data/orders/*.csv"\n'
            'unique = ["id"]\n[sources.orders.columns]\nid = "BIGINT"\namount = "DOUBLE"\n\n')
    toml += pipeline("load", [step("ingest", "ingest", params={"source": "orders"}),
                              step("check", "step_fail", ["ingest"],
                                   params={"marker": str(root / "check.marker"), "once": True})])
    toml += pipeline("react", [step("note", "step_record", params={"log": str(root / "react.log"), "label": "r"})],
                     triggers='[{event = "ingest.batch", subject = "source:orders", debounce_s = 1}]')
    project = make_project(root / "project", ["good/pipeline_steps"], toml)
    (data / "orders").mkdir(parents=True)
    for n in range(3):
        rows = "".join(f"{n * 10 + i},{i * 1.5}\n" for i in range(10))
        (data / "orders" / f"part-{n}.csv").write_text("id,amount\n" + rows)
    with DaemonProcess(root / "home", project) as d:
        first = d.post("/pipelines/load/run").json()
        first = wait_run(d, "load", first["id"])
        assert first["status"] == "failed"
        assert {s["step"]: s["status"] for s in first["steps"]} == {"ingest": "succeeded", "check": "failed"}
        assert d.get("/sources/orders").json()["rows"] == 30
        second = wait_run(d, "load", d.post("/pipelines/load/run").json()["id"])
        assert second["status"] == "succeeded"
        source = d.get("/sources/orders").json()
        assert source["rows"] == 30 and source["batches"] == 3, "the re-run loaded no file twice"
        # Three batches from the first run, none from the second (duplicates): one triggered run.
        deadline = time.monotonic() + 15
        while not (runs := d.get("/pipelines/react/runs").json()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
        runs = d.get("/pipelines/react/runs").json()
        assert len(runs) == 1 and runs[0]["trigger"] == "event" and runs[0]["cause"].startswith("3 event(s)")
