"""A long poll on a job (``GET /jobs/ID?wait=N``) answers as soon as the job ends, whenever the end comes."""

from __future__ import annotations

import threading
import time

from appliance import JobKind, hookimpl
from appliance.testing import InProcessApp


class Gate:
    """A plugin whose job runs until the test opens its gate."""

    APPLIANCE_CONTRACT = "1.1"

    def __init__(self):
        self.open = threading.Event()

    @hookimpl
    def register_job_kinds(self, register):
        register(JobKind("gated", lambda job: self.open.wait(10) and {}))


def test_a_job_that_ends_while_the_poll_reads_it_is_answered_at_once(tmp_path):
    """The job ends after the poll has read it as running but before the poll starts waiting: the poll used to
    miss that end and answer only at its next look, 5 s later."""
    gate = Gate()
    with InProcessApp(tmp_path / "home", toml="", plugins=[("gate", gate)]) as a:
        job_id = a.submit("gated")["id"]
        while a.get(f"/jobs/{job_id}").json()["state"] != "running":
            time.sleep(0.01)
        jobs, read = a.app.jobs, a.app.jobs.get
        ended = threading.Event()
        a.app.events.listen(lambda e: e.subject == f"job:{job_id}" and e.type == "job.succeeded" and ended.set())

        def get_then_end(jid):
            record = read(jid)  # still running; the job ends before this answer reaches the poll
            if record["state"] == "running" and not gate.open.is_set():
                gate.open.set()
                ended.wait(5)
            return record

        jobs.get = get_then_end
        try:
            start = time.monotonic()
            answer = a.get(f"/jobs/{job_id}", params={"wait": 10}).json()
            took = time.monotonic() - start
        finally:
            del jobs.get
        assert answer["state"] == "succeeded" and took < 2, (answer["state"], took)
