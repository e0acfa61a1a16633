"""The daemon side of the dashboard's ``t`` key: a paused schedule fires nothing, not even after a restart, and
resumes from now without catching up the times it missed."""

from __future__ import annotations

import time

from conftest import make_project

from appliance.testing import DaemonProcess

TOML = """
[fixture]
markers = "{markers}"

[schedules.tick]
kind = "sleep"
interval_s = 1
params = {{ seconds = 0.01 }}
"""


def fired(d: DaemonProcess) -> list[dict]:
    return [j for j in d.get("/jobs", params={"kind": "sleep", "limit": 1000}).json()
            if j["origin"] == "schedule:tick"]


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_paused_schedule_stays_paused_across_a_restart_and_resumes_from_now(tmp_path):
    project = make_project(tmp_path / "project", ["good/fixture_jobs"], TOML.format(markers=tmp_path / "m"))
    with DaemonProcess(tmp_path / "home", project) as d:
        assert wait_for(lambda: fired(d))
        r = d.post("/schedules/tick/pause")
        assert r.status_code == 200 and r.json()["paused"] is True and r.json()["next_fire"] is None, r.text
        before = len(fired(d))
        time.sleep(2.5)
        assert len(fired(d)) == before
        d.restart()
        time.sleep(2.5)
        tick = next(s for s in d.get("/schedules").json() if s["name"] == "tick")
        assert tick["paused"] is True and len(fired(d)) == before  # nothing fired, nothing caught up
        assert d.post("/schedules/tick/resume").json()["paused"] is False
        assert wait_for(lambda: len(fired(d)) > before, timeout=5)
        fires = next(s for s in d.get("/schedules").json() if s["name"] == "tick")["fires"]
        assert fires[0]["trigger"] == "schedule" and fires[0]["missed"] == []
        assert d.post("/schedules/nope/pause").status_code == 404
        assert d.post("/schedules/tick/pause", {"type": "cron"}).status_code == 400
