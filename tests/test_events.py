"""Events: persisted, streamed over SSE in order without gaps, and sinks that cannot slow anyone down."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    markers = root / "markers"
    project = make_project(root / "project", ["good/fixture_jobs", "good/hanging_sink"],
                           f'[fixture]\nmarkers = "{markers}"\n')
    with DaemonProcess(root / "home", project) as d:
        d.markers = markers
        yield d


def read_sse(daemon, params, until, timeout=10.0):
    got = []
    with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=timeout) as c:
        with c.stream("GET", "/api/v1/events/stream", params=params) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data:"):
                    got.append(json.loads(line[5:]))
                    if until(got):
                        return got
    return got


def test_events_are_persisted_in_order(daemon):
    job = daemon.submit("sleep", {"seconds": 0})
    daemon.wait_job(job["id"])
    mine = [e for e in daemon.events(type="job.*") if e["data"].get("job_id") == job["id"]]
    assert [e["type"] for e in mine][0] == "job.queued"
    assert [e["type"] for e in mine][-1] == "job.succeeded"
    ids = [e["id"] for e in daemon.events()]
    assert ids == sorted(ids)


def test_sse_resumes_after_an_id_then_streams_live_events(daemon):
    last = daemon.events()[-1]["id"]
    result = {}

    def follow():
        result["events"] = read_sse(daemon, {"after": last},
                                    until=lambda got: any(e["type"] == "job.succeeded" for e in got))

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.3)
    job = daemon.submit("sleep", {"seconds": 0.1})
    t.join(15)
    got = result["events"]
    ids = [e["id"] for e in got]
    assert ids == sorted(ids) and ids[0] == last + 1
    assert len(ids) == len(set(ids))
    assert {"job.queued", "job.started", "job.succeeded"} <= {e["type"] for e in got if e["data"].get("job_id") == job["id"]}


def test_sse_type_filter(daemon):
    job = daemon.submit("sleep", {"seconds": 0})
    daemon.wait_job(job["id"])
    got = read_sse(daemon, {"after": 0, "type": "job.succeeded"}, until=lambda got: len(got) >= 1)
    assert got and all(e["type"] == "job.succeeded" for e in got)


def test_hanging_sink_does_not_delay_the_daemon_or_other_sinks(daemon):
    # hanging_sink blocks forever on its first event; fixture_jobs' sink must still see each event promptly
    start = time.time()
    jobs = [daemon.submit("sleep", {"seconds": 0}) for _ in range(20)]
    for j in jobs:
        assert daemon.wait_job(j["id"], timeout=10)["state"] == "succeeded"
    assert time.time() - start < 10
    last = daemon.events(type="job.succeeded")[-1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = {json.loads(line)["id"]: json.loads(line)["t"]
                for line in (daemon.markers / "events.jsonl").read_text().splitlines()}
        if last["id"] in seen:
            break
        time.sleep(0.05)
    assert last["id"] in seen
    assert seen[last["id"]] - last["time"] < 2.0


def test_cli_events_follow_streams(daemon):
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "--home", str(daemon.home), "events", "--follow",
                             "--json", "--limit", "1"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        job = daemon.submit("sleep", {"seconds": 0})
        deadline = time.monotonic() + 15
        found = False
        while time.monotonic() < deadline and not found:
            line = proc.stdout.readline()
            if not line:
                break
            e = json.loads(line)
            found = e["type"] == "job.succeeded" and e["data"]["job_id"] == job["id"]
        assert found
    finally:
        proc.terminate()
        proc.wait(5)


def test_stream_ends_cleanly_when_the_daemon_stops(tmp_path):
    d = DaemonProcess(tmp_path / "home").start()
    done = {}

    def follow():
        done["events"] = read_sse(d, {"after": 0}, until=lambda got: False, timeout=20)

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert d.stop(timeout=15) == 0
    t.join(10)
    assert not t.is_alive()
    assert time.monotonic() - start < 8
    assert done["events"][0]["type"] == "daemon.started"
