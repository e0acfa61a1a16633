"""The demo project in a real daemon, shortened for the suite: what the dashboard's tests are held to.

``appliance demo`` runs ten days of transactions through the nightly pipeline and sends traffic for a minute;
here three days, three epochs and a few seconds of traffic give every area real data in ~20 s: a source with
quarantined rows, two feature views with statistics, a training run with its curves, a served champion with
latency, drift monitor runs and an open drift alert, scheduled pipelines, and a GPU (the fake provider, behind the
same hook as NVML: there is no NVIDIA GPU here).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from conftest import FIXTURE_PLUGINS

from appliance.testing import DaemonProcess
from plugins.demo.project import generator, lay_out
from plugins.demo.traffic import Traffic

EXTRA = """
[monitoring]
gpu_provider = "fake_gpu"

[fixture]
markers = "{markers}"
"""


def demo_project(root: Path) -> Path:
    project = root / "project"
    lay_out(project, days=3, per_day=1500)
    toml = (project / "appliance.toml").read_text().replace("epochs = 8", "epochs = 3")
    (project / "appliance.toml").write_text(toml + EXTRA.format(markers=root / "markers"))
    for name in ("fake_gpu", "fixture_jobs"):
        (project / "plugins" / f"{name}.py").write_text((FIXTURE_PLUGINS / "good" / f"{name}.py").read_text())
    return project


@contextmanager
def demo_daemon(root: Path, traffic_s: float = 3.0):
    """A daemon serving the demo project after its pipeline ran once, traffic sent and monitors run."""
    project = demo_project(root)
    with DaemonProcess(root / "home", project) as d:
        run = d.post("/pipelines/nightly/run").json()
        run_id = run.get("id") or run.get("run", {}).get("id")
        deadline = time.monotonic() + 180
        while (detail := d.get(f"/pipelines/nightly/runs/{run_id}").json())["status"] in (
                "queued", "running", "pending") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert detail["status"] == "succeeded", detail
        while d.get("/deployments/fraud").json()["state"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        traffic = Traffic(f"http://127.0.0.1:{d.get('/deployments').json()['port']}", generator().World(seed=7),
                          feedback_token=d.get("/feedback/token").json()["token"], drift_after=traffic_s / 3)
        traffic.start()
        time.sleep(traffic_s)
        traffic.stop()
        traffic.join(10)
        for monitor in ("fraud_drift", "fraud_drift", "fraud_latency", "gpu", "box"):
            assert d.wait_job(d.post(f"/monitors/{monitor}/run").json()["id"])["state"] == "succeeded"
        d.root = root
        yield d
