"""The job runner when the catalog refuses a write: no job is lost, no worker slot leaks, cancel still works.

Fault points (``appliance/faults.py``) make one kind of runner write fail with EMFILE or ENOSPC; the real
failures (a daemon out of descriptors, a full disk) are in ``test_jobs_starved.py``.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess
from faults.harness import EMFILE, ENOSPC, faults_env, open_fds

ONE_WORKER = "[daemon]\nworkers = 1\n"


def _project(tmp_path, toml=ONE_WORKER):
    return make_project(tmp_path / "project", ["good/fixture_jobs", "good/fixture_fault_jobs"], toml)


def _attempts(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def test_jobs_leave_no_descriptors_behind(tmp_path):
    with DaemonProcess(tmp_path / "home", _project(tmp_path, "[daemon]\nworkers = 4\n")) as d:
        for job in [d.submit("sleep", {"seconds": 0}) for _ in range(4)]:
            d.wait_job(job["id"])
        before = open_fds(d.proc.pid)
        for job in [d.submit("sleep", {"seconds": 0}) for _ in range(40)]:
            assert d.wait_job(job["id"])["state"] == "succeeded"
        assert open_fds(d.proc.pid) <= before + 6  # a thread's catalog connection ends with its thread


@pytest.mark.parametrize("errno", [EMFILE, ENOSPC])
def test_a_failure_the_catalog_refuses_frees_the_slot_and_is_recorded_later(tmp_path, errno):
    d = DaemonProcess(tmp_path / "home", _project(tmp_path), env=faults_env(f"jobs.record_failure=oserror:{errno}"))
    with d:
        bad = d.submit("flaky", {"log": str(tmp_path / "bad.jsonl"), "succeed_on": 99}, retries=0)
        good = d.submit("sleep", {"seconds": 0.05})
        assert d.wait_job(good["id"], timeout=10)["state"] == "succeeded"  # the one worker was not lost
        seen = d.get(f"/jobs/{bad['id']}").json()
        assert seen["state"] == "failed" and "not recorded yet" in seen["message"]
        health = d.get("/health").json()
        assert health["status"] == "degraded"
        assert any("not recorded yet" in p["problem"] for p in health["problems"])
        # A failed attempt whose retry cannot be recorded is still cancelled, and never runs again.
        log = tmp_path / "retrying.jsonl"
        retrying = d.submit("flaky", {"log": str(log), "succeed_on": 99}, retries=3, backoff_s=0.1)
        assert _until(lambda: _attempts(log) == 1)
        time.sleep(0.2)
        cancelled = d.post(f"/jobs/{retrying['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        time.sleep(0.5)
        assert _attempts(log) == 1
    d.env.pop("APPLIANCE_FAULTS")
    with d:
        assert d.get(f"/jobs/{bad['id']}").json()["state"] == "failed"  # by its policy: no retries left
        assert d.get(f"/jobs/{retrying['id']}").json()["state"] == "cancelled"
        assert d.get("/jobs", params={"state": "running"}).json() == []


def test_a_job_whose_start_fails_goes_back_to_the_queue_and_others_run(tmp_path):
    d = DaemonProcess(tmp_path / "home", _project(tmp_path), env=faults_env(f"jobs.start.flaky=oserror:{EMFILE}"))
    with d:
        stuck = d.submit("flaky", {"log": str(tmp_path / "never.jsonl")})
        good = d.submit("sleep", {"seconds": 0.05})
        assert d.wait_job(good["id"], timeout=10)["state"] == "succeeded"
        again = d.get(f"/jobs/{stuck['id']}").json()
        assert again["state"] == "queued" and "could not start" in again["message"]
        assert d.post(f"/jobs/{stuck['id']}/cancel").json()["state"] == "cancelled"
        assert not (tmp_path / "never.jsonl").exists()


def test_progress_and_log_lines_the_catalog_refuses_do_not_fail_the_job(tmp_path):
    with DaemonProcess(tmp_path / "home", _project(tmp_path), env=faults_env(f"jobs.report=oserror:{ENOSPC}")) as d:
        job = d.submit("sleep", {"seconds": 0.3})
        done = d.wait_job(job["id"], timeout=10)
        assert done["state"] == "succeeded" and done["result"] == {"slept": 0.3}
        failing = d.submit("flaky", {"log": str(tmp_path / "f.jsonl"), "succeed_on": 99}, retries=0)
        assert d.wait_job(failing["id"], timeout=10)["state"] == "failed"


def test_a_start_whose_recovery_the_catalog_refuses_still_starts_and_records_it_later(tmp_path):
    d = DaemonProcess(tmp_path / "home", _project(tmp_path)).start()
    job = d.submit("sleep", {"seconds": 30}, retries=0)
    d.wait_job(job["id"], states=("running",))
    d.kill()
    d.env.update(faults_env(f"jobs.record_failure=oserror:{ENOSPC}"))
    with d:  # the cut-off job cannot be recorded as failed: the daemon starts anyway, and says so
        seen = d.get(f"/jobs/{job['id']}").json()
        assert seen["state"] == "failed" and "not recorded yet" in seen["message"]
        assert d.get("/health").json()["status"] == "degraded"
    d.env.pop("APPLIANCE_FAULTS")
    with d:
        done = d.get(f"/jobs/{job['id']}").json()
        assert done["state"] == "failed" and "the daemon stopped while this job was running" in done["error"]


# ------------------------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("point, kind, params, retries, final, attempts", [
    # killed between a job's end and its record: run again by its policy (one retry), then it succeeds
    ("jobs.ended", "sleep", {"seconds": 0.05}, 1, "succeeded", 2),
    # killed between a job's end and its record, no retries left: failed, saying why
    ("jobs.ended", "sleep", {"seconds": 0.05}, 0, "failed", 1),
    # killed while recording a failure: that attempt counts as failed; the next ones run as the policy says
    ("jobs.record_failure", "flaky", {"succeed_on": 2}, 2, "succeeded", 2),
    # killed after the job was marked running, before its code ran
    ("jobs.start.sleep", "sleep", {"seconds": 0.05}, 1, "succeeded", 2),
])
def test_kill_9_at_a_runner_point_then_restart_settles_the_job_by_its_policy(tmp_path, point, kind, params,
                                                                           retries, final, attempts):
    if kind == "flaky":
        params = {**params, "log": str(tmp_path / "flaky.jsonl")}
    d = DaemonProcess(tmp_path / "home", _project(tmp_path), env=faults_env(point)).start()
    with contextlib.suppress(httpx.HTTPError):  # the fault may kill the daemon before it answers
        d.post("/jobs", {"kind": kind, "params": params, "retries": retries, "backoff_s": 0.05})
    assert d.proc.wait(15) == -9  # the fault point killed it
    d.env.pop("APPLIANCE_FAULTS")
    with d:
        [job] = d.get("/jobs").json()
        done = d.wait_job(job["id"], timeout=15)
        assert (done["state"], done["attempt"]) == (final, attempts)
        if final == "failed":
            assert "the daemon stopped while this job was running" in done["error"]
        assert d.get("/jobs", params={"state": "running"}).json() == []
        if kind == "flaky":
            assert [json.loads(line)["attempt"] for line in (tmp_path / "flaky.jsonl").read_text().splitlines()] \
                == [1, 2]
