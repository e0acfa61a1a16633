"""Long polls on the control port: clients waiting on a job's end hold no worker thread each, so the rest of the
API stays fast however many of them wait, and every one of them hears of the end at once."""

from __future__ import annotations

import select
import time

import httpx
import pytest
from conftest import make_project

from appliance.testing import DaemonProcess
from faults.harness import idle_connections

POLLS = 70  # more than the 40 threads that answer the API's plain routes


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("control-polls")
    with DaemonProcess(root / "home", make_project(root / "project", ["good/fixture_jobs"])) as d:
        yield d


def test_many_long_polls_leave_the_api_fast_and_all_hear_the_end(daemon):
    job = daemon.submit("sleep", {"seconds": 60})
    poll = (f"GET /api/v1/jobs/{job['id']}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {daemon.token}\r\n\r\n").encode()
    with idle_connections("127.0.0.1", daemon.info["port"], POLLS, poll) as polls:
        assert len(polls) == POLLS
        time.sleep(1.0)  # every poll is in the daemon, waiting
        with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"},
                          timeout=30) as c:
            for path in ("/status", "/jobs", f"/jobs/{job['id']}/logs", "/plugins"):
                t0 = time.monotonic()
                assert c.get("/api/v1" + path).status_code == 200
                assert time.monotonic() - t0 < 2.0, f"{path} waited behind the long polls"
            assert not select.select(polls, [], [], 0)[0], "a long poll answered before the job ended"
            assert c.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
        deadline = time.monotonic() + 10
        answers = {s: b"" for s in polls}
        while time.monotonic() < deadline and not all(b'"state":"cancelled"' in a for a in answers.values()):
            for s in select.select(polls, [], [], 0.2)[0]:
                answers[s] += s.recv(65536)
        heard = sum(b'"state":"cancelled"' in a for a in answers.values())
        assert heard == POLLS, f"{heard} of {POLLS} long polls heard the job end"
