"""The job runner through a real daemon: progress, logs, cancel, retries, timeouts, the GPU gate, children."""

from __future__ import annotations

import json
import time

from appliance.home import pid_alive


def test_job_reports_progress_and_result(jobs_daemon):
    d = jobs_daemon
    job = d.submit("sleep", {"seconds": 0.3})
    assert job["state"] == "queued"
    done = d.wait_job(job["id"])
    assert done["state"] == "succeeded" and done["progress"] == 1 and done["result"] == {"slept": 0.3}
    progress = [e for e in d.events(type="job.progress") if e["data"]["job_id"] == job["id"]]
    assert progress and all(0 <= e["data"]["fraction"] <= 1 for e in progress)
    assert progress[0]["data"]["message"] == "sleeping"


def test_a_long_poll_answers_when_the_job_ends(jobs_daemon):
    d = jobs_daemon
    job = d.submit("sleep", {"seconds": 1.5})
    assert d.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running")  # no wait: as it is now
    ended = d.get(f"/jobs/{job['id']}", params={"wait": 30}, timeout=60).json()
    assert ended["state"] == "succeeded" and ended["result"] == {"slept": 1.5}  # one call, no polling
    waiting = d.submit("sleep", {"seconds": 30})
    still = d.get(f"/jobs/{waiting['id']}", params={"wait": 1}).json()
    assert still["state"] in ("queued", "running")  # the wait ran out first: the job as it is then
    d.post(f"/jobs/{waiting['id']}/cancel")
    too_long = d.get(f"/jobs/{job['id']}", params={"wait": 61})
    assert too_long.status_code == 400 and "'wait' must be >= 0 and <= 60" in too_long.json()["error"]["message"]
    assert d.get("/jobs/999999", params={"wait": 5}).status_code == 404


def test_cancel_a_running_and_a_queued_job(jobs_daemon):
    d = jobs_daemon
    running = d.submit("sleep", {"seconds": 30})
    d.wait_job(running["id"], states=("running",))
    out = d.cli("jobs", "cancel", str(running["id"]))
    assert out.returncode == 0, out.stderr
    assert d.wait_job(running["id"], timeout=10)["state"] == "cancelled"
    again = d.post(f"/jobs/{running['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]


def test_cancel_queued_job_never_runs(jobs_daemon):
    d = jobs_daemon
    log = d.root / "gpu-cancel.jsonl"
    first = d.submit("gpu_work", {"log": str(log), "seconds": 1.0})
    queued = d.submit("gpu_work", {"log": str(log), "seconds": 0.1})  # waits for the GPU gate
    assert d.get(f"/jobs/{queued['id']}").json()["state"] == "queued"
    assert d.post(f"/jobs/{queued['id']}/cancel").json()["state"] == "cancelled"
    d.wait_job(first["id"])
    time.sleep(0.3)
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert ids == [first["id"]]


def test_flaky_job_is_retried_with_exponential_backoff_then_succeeds(jobs_daemon):
    d = jobs_daemon
    log = d.root / "flaky.jsonl"
    job = d.submit("flaky", {"log": str(log), "succeed_on": 3})
    done = d.wait_job(job["id"], timeout=30)
    assert done["state"] == "succeeded" and done["attempt"] == 3
    starts = [json.loads(line)["t"] for line in log.read_text().splitlines()]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # backoff_s=0.2, doubled each attempt
    failed = [e["data"] for e in d.events(type="job.failed") if e["data"]["job_id"] == job["id"]]
    assert [f["attempt"] for f in failed] == [1, 2] and all(f["will_retry"] for f in failed)
    assert "flaky failure on attempt 1" in failed[0]["error"]
    logs = d.get(f"/jobs/{job['id']}/logs").json()
    assert any("RuntimeError: flaky failure" in line["line"] for line in logs)


def test_retries_run_out_and_the_job_fails_with_its_error(jobs_daemon):
    d = jobs_daemon
    job = d.submit("flaky", {"log": str(d.root / "flaky2.jsonl"), "succeed_on": 99}, retries=1, backoff_s=0.05)
    done = d.wait_job(job["id"], timeout=30)
    assert (done["state"], done["attempt"], done["max_attempts"]) == ("failed", 2, 2)
    assert done["error"] == "RuntimeError: flaky failure on attempt 2"


def test_timeout_fails_the_job(jobs_daemon):
    d = jobs_daemon
    job = d.submit("sleep", {"seconds": 30}, timeout_s=0.3)
    done = d.wait_job(job["id"], timeout=10)
    assert done["state"] == "failed" and done["error"] == "timed out after 0.3 s"
    child = d.submit("child_sleep", {"seconds": 30}, timeout_s=1)
    done = d.wait_job(child["id"], timeout=20)
    assert done["state"] == "failed" and "timed out after 1 s" in done["error"]


def test_gpu_gate_runs_one_gpu_job_at_a_time(jobs_daemon):
    d = jobs_daemon
    log = d.root / "gpu.jsonl"
    jobs = [d.submit("gpu_work", {"log": str(log), "seconds": 0.3}) for _ in range(3)]
    other = d.submit("sleep", {"seconds": 0.1})
    assert d.wait_job(other["id"])["state"] == "succeeded"  # CPU work is not held behind the GPU queue
    for j in jobs:
        assert d.wait_job(j["id"])["state"] == "succeeded"
    spans = sorted((r["start"], r["end"]) for r in map(json.loads, log.read_text().splitlines()))
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end


def test_child_process_job_reports_progress_logs_messages_and_result(jobs_daemon):
    d = jobs_daemon
    messages = d.root / "messages.json"
    job = d.submit("child_sum", {"numbers": [1, 2, 3], "messages": str(messages)})
    done = d.wait_job(job["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["sum"] == 6
    assert done["result"]["pid"] != d.proc.pid
    lines = [entry["line"] for entry in d.get(f"/jobs/{job['id']}/logs").json()]
    assert "child says hello" in lines and "printed by the child" in lines
    assert json.loads(messages.read_text()) == {"type": "note", "data": {"n": 3}}


def test_child_that_dies_with_os_exit_fails_its_job_and_the_daemon_stays_healthy(jobs_daemon):
    d = jobs_daemon
    job = d.submit("child_exit")
    done = d.wait_job(job["id"])
    assert done["state"] == "failed"
    assert "exited with code 1" in done["error"]
    assert "about to die" in [entry["line"] for entry in d.get(f"/jobs/{job['id']}/logs").json()]
    assert d.get("/health").json()["status"] == "ok"
    assert d.wait_job(d.submit("sleep", {"seconds": 0})["id"])["state"] == "succeeded"


def test_child_exception_becomes_the_job_error_with_traceback_in_logs(jobs_daemon):
    d = jobs_daemon
    done = d.wait_job(d.submit("child_raises")["id"])
    assert done["state"] == "failed" and done["error"] == "ValueError: bad value in the child"
    logs = "\n".join(entry["line"] for entry in d.get(f"/jobs/{done['id']}/logs").json())
    assert "Traceback" in logs


def test_cancel_kills_a_child_process(jobs_daemon):
    d = jobs_daemon
    job = d.submit("child_sleep", {"seconds": 60})
    deadline = time.monotonic() + 20
    pid = None
    while pid is None and time.monotonic() < deadline:
        for entry in d.get(f"/jobs/{job['id']}/logs").json():
            if entry["line"].startswith("child pid "):
                pid = int(entry["line"].split()[-1])
        time.sleep(0.05)
    assert pid and pid_alive(pid)
    d.post(f"/jobs/{job['id']}/cancel")
    assert d.wait_job(job["id"], timeout=10)["state"] == "cancelled"
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def test_bad_submissions_get_clear_errors(jobs_daemon):
    d = jobs_daemon
    cases = [
        ({"params": {}}, 400, "field 'kind' is required"),
        ({"kind": "sleep", "params": [1]}, 400, "params must be an object"),
        ({"kind": "sleep", "retries": "x"}, 400, "'retries' must be a number"),
        ({"kind": "sleep", "retries": -1}, 400, "retries must be >= 0"),
        ({"kind": "sleep", "colour": 1}, 400, "unknown field(s) colour"),
        ({"kind": "nope"}, 404, "unknown job kind 'nope'; registered kinds:"),
    ]
    for body, status, message in cases:
        r = d.post("/jobs", body)
        assert r.status_code == status, body
        assert message in r.json()["error"]["message"], r.text
    assert d.get("/jobs/abc").status_code == 400
    assert d.get("/jobs/999999").status_code == 404
    assert d.get("/jobs", params={"state": "bogus"}).status_code == 400
    assert d.get("/jobs", params={"limit": "-5"}).status_code == 400


def test_cli_submit_wait_and_list(jobs_daemon):
    d = jobs_daemon
    out = d.cli("jobs", "submit", "sleep", "-p", "seconds=0.1", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["state"] == "succeeded" and job["params"] == {"seconds": 0.1}
    listed = json.loads(d.cli("jobs", "--json", "--kind", "sleep").stdout)
    assert listed[0]["id"] == job["id"]
    assert "succeeded" in d.cli("jobs").stdout
    failing = d.cli("jobs", "submit", "child_exit", "--wait")
    assert failing.returncode == 1 and "exited with code 1" in failing.stdout
