"""The route in-process (``appliance_app``), and the command and the dashboard panel against a real daemon that
loads the plugin from its entry point (``appliance_daemon``, ``appliance_panel``)."""

from __future__ import annotations

import time

import appliance_slow_jobs
import pytest

from appliance import ConfigError, JobKind, hookimpl


class Naps:
    """A helper plugin for these tests: a job kind that sleeps as long as it is told."""

    @staticmethod
    def nap(job):
        time.sleep(job.params["seconds"])
        return {}

    @hookimpl
    def register_job_kinds(self, register):
        register(JobKind("nap", self.nap))


Naps.APPLIANCE_CONTRACT = "1.1"


def test_the_route_lists_finished_jobs_slowest_first(appliance_app):
    app = appliance_app(plugins=[appliance_slow_jobs, ("naps", Naps())])
    ids = [app.submit("nap", {"seconds": s})["id"] for s in (0, 0.5, 0)]
    for job_id in ids:
        app.wait_job(job_id)
    jobs = app.get("/slow-jobs").json()["jobs"]
    assert sorted(j["id"] for j in jobs) == ids and jobs[0]["id"] == ids[1]
    assert [j["seconds"] for j in jobs] == sorted((j["seconds"] for j in jobs), reverse=True)
    assert jobs[0]["kind"] == "nap" and jobs[0]["state"] == "succeeded" and jobs[0]["seconds"] >= 0.5
    assert [j["id"] for j in app.get("/slow-jobs", params={"limit": 1}).json()["jobs"]] == [ids[1]]
    assert app.get("/slow-jobs", params={"kind": "other"}).json() == {"jobs": []}
    r = app.get("/slow-jobs", params={"limit": 0})
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]


def test_a_bad_setting_names_file_line_and_key(appliance_app):
    with pytest.raises(ConfigError) as err:
        appliance_app("[slow_jobs]\nlimit = 0\n", plugins=[appliance_slow_jobs])
    assert "appliance.toml:2: slow_jobs.limit: expected at least 1, got 0" in str(err.value)


def test_the_command_and_the_panel(appliance_daemon, appliance_panel):
    d = appliance_daemon("[slow_jobs]\nlimit = 5\n")
    job = d.wait_job(d.submit("retention")["id"])  # a built-in job kind
    out = d.cli("slow-jobs")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:4] == ["ID", "KIND", "STATE", "SECONDS"] and "retention" in out.stdout
    view = appliance_panel(d, "slow_jobs")
    assert view.title == "Slowest jobs"
    assert [(r["id"], r["kind"]) for r in view.rows] == [(job["id"], "retention")]
