"""The plugin as its users get it: installed, loaded by real daemons (the appliance_daemon fixture), posting to
a small HTTP server on loopback, and ingesting European CSV through the built-in ingest plugin."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def receiver():
    """An HTTP server on loopback that records every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield server
    server.shutdown()
    server.server_close()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


TOML = """
[webhook]
url = "{url}"

[ingest]
data_dirs = ["data"]

[sources.invoices]
kind = "csv_eu"
glob = "data/*.csv"
[sources.invoices.columns]
id = "BIGINT"
amount = "DOUBLE"
"""


def test_alerts_are_posted_to_the_webhook_and_other_events_are_not(appliance_daemon, receiver):
    d = appliance_daemon(TOML.format(url=receiver.url))
    plugins = {p["name"]: p for p in d.get("/plugins").json()["plugins"]}
    assert (plugins["webhook"]["source"], plugins["webhook"]["status"]) == ("entrypoint", "loaded")
    r = d.post("/webhook/test")
    assert r.status_code == 202, r.text
    wait_for(lambda: receiver.received)
    [post] = receiver.received
    assert (post["path"], post["type"]) == ("/hook", "application/json")
    assert post["json"]["type"] == "alert.test" and post["json"]["id"] == r.json()["event_id"]
    assert post["json"]["data"] == {"message": "a test alert from appliance-webhook"}
    d.wait_job(d.submit("retention")["id"])  # plenty of job.* events, none of them alerts
    time.sleep(0.3)
    assert len(receiver.received) == 1
    assert d.get("/webhook").json()["delivered"] == 1


def test_a_dead_webhook_is_recorded_against_the_plugin_and_the_daemon_carries_on(appliance_daemon):
    d = appliance_daemon('[webhook]\nurl = "http://127.0.0.1:9/nobody-listens"\ntimeout_s = 1\n')
    d.post("/webhook/test")
    wait_for(lambda: d.get("/webhook").json()["failed"] == 1)
    failures = [f for f in d.get("/plugins").json()["failures"] if f["plugin"] == "webhook"]
    assert failures and "could not post event" in failures[-1]["message"]
    assert d.get("/health").json()["status"] == "ok"


def test_the_csv_eu_source_kind_reads_semicolons_and_decimal_commas(appliance_daemon, receiver):
    d = appliance_daemon(TOML.format(url=receiver.url))
    (d.project / "data").mkdir(exist_ok=True)
    (d.project / "data" / "march.csv").write_text("id;amount\n1;2,5\n2;1234,75\n")
    r = d.post("/sources/invoices/ingest")
    assert r.status_code == 202, r.text
    job = d.wait_job(r.json()["id"])
    assert job["state"] == "succeeded", job
    rows = d.get("/sources/invoices/rows").json()["rows"]
    assert [row[:2] for row in rows] == [[1, 2.5], [2, 1234.75]]


def test_a_bad_url_is_refused_naming_the_key(appliance_daemon):
    with pytest.raises(RuntimeError) as err:
        appliance_daemon('[webhook]\nurl = "ftp://example.com/x"\n')
    assert "appliance.toml:2: webhook.url: expected an http:// or https:// URL, got 'ftp://example.com/x'" \
        in str(err.value)
