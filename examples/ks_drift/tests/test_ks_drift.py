"""The monitor and the sink as users get them: loaded into the appliance (``appliance_app`` in-process with the
built-in ingest and monitoring plugins, ``appliance_daemon`` from the entry point), fed by real ingests."""

from __future__ import annotations

import json
import random
import time

import appliance_ks_drift
import pytest

from appliance import ConfigError

TOML = """\
[ingest]
data_dirs = ["data"]

[sources.orders]
kind = "csv"
glob = "data/*.csv"
[sources.orders.columns]
id = "BIGINT"
amount = "DOUBLE"
country = "VARCHAR"

[monitors.orders_drift]
kind = "ks_drift"
source = "orders"
columns = ["amount"]
min_rows = 100

[alert_sinks.audit]
kind = "jsonl"
path = "alerts/alerts.jsonl"
"""


def write_batch(project, name, start, n, shift, seed):
    rng = random.Random(seed)
    rows = [f"{i},{rng.gauss(100 + shift, 15):.2f},DE" for i in range(start, start + n)]
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / name).write_text("id,amount,country\n" + "\n".join(rows) + "\n")


def ingest(app, name):
    job = app.wait_job(app.post("/sources/orders/ingest", {"files": [f"data/{name}"]}).json()["id"])
    assert job["state"] == "succeeded", job


def run_monitor(app):
    job = app.wait_job(app.post("/monitors/orders_drift/run").json()["id"])
    assert job["state"] == "succeeded", job
    return app.get("/monitors/orders_drift").json()["runs"][0]


def test_ks_statistic_and_p_value():
    assert appliance_ks_drift.ks_statistic([1, 2, 3], [1, 2, 3]) == 0
    assert appliance_ks_drift.ks_statistic([1, 2, 3], [4, 5, 6]) == 1
    assert appliance_ks_drift.ks_p_value(0.0, 500, 500) == 1.0
    assert appliance_ks_drift.ks_p_value(0.2, 500, 500) < 1e-8  # Kolmogorov's limit distribution: 4.1e-9
    assert abs(appliance_ks_drift.ks_p_value(0.0767, 500, 300) - 0.2106) < 0.005  # scipy's ks_2samp (exact): 0.2106


def test_a_shifted_batch_raises_an_alert_that_the_sink_writes(appliance_app):
    app = appliance_app(TOML, plugins=[appliance_ks_drift], builtins=["ingest", "monitoring"])
    project = app.app.config.project_dir
    write_batch(project, "a.csv", 0, 400, 0, seed=1)
    write_batch(project, "b.csv", 400, 200, 0, seed=2)
    ingest(app, "a.csv")
    ingest(app, "b.csv")
    run = run_monitor(app)
    assert run["status"] == "ok" and run["checks"][0]["firing"] is False, run
    write_batch(project, "c.csv", 600, 200, 30, seed=3)  # amounts 30 higher: the distribution moved
    ingest(app, "c.csv")
    run = run_monitor(app)
    [check] = run["checks"]
    assert check["firing"] and "orders.amount" in check["message"], run
    sink = project / "alerts" / "alerts.jsonl"
    deadline = time.monotonic() + 5
    while not sink.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    [alert] = [json.loads(line) for line in sink.read_text().splitlines()]
    assert (alert["event"], alert["rule"], alert["subject"]) == ("raised", "orders_drift.drift",
                                                                 "source:orders:amount")
    assert alert["value"] < 0.01


def test_too_few_rows_is_no_verdict(appliance_app):
    app = appliance_app(TOML, plugins=[appliance_ks_drift], builtins=["ingest", "monitoring"])
    write_batch(app.app.config.project_dir, "a.csv", 0, 50, 0, seed=1)
    ingest(app, "a.csv")
    assert run_monitor(app)["status"] == "no data"


@pytest.mark.parametrize("change, bad, error", [
    ('columns = ["amount"]', 'columns = "amount"',
     "appliance.toml:15: monitors.orders_drift.columns: expected a list of strings, got str 'amount'"),
    ('source = "orders"\n', '', "appliance.toml:12: monitors.orders_drift: a ks_drift monitor needs source = ..."),
    ('path = "alerts/alerts.jsonl"', 'path = 7', "appliance.toml:20: alert_sinks.audit.path: expected a path, got int 7"),
])
def test_option_mistakes_name_file_line_and_key(appliance_app, change, bad, error):
    with pytest.raises(ConfigError) as err:
        appliance_app(TOML.replace(change, bad), plugins=[appliance_ks_drift], builtins=["ingest", "monitoring"])
    assert error in str(err.value)


def test_the_daemon_loads_both_from_the_entry_point(appliance_daemon):
    d = appliance_daemon(TOML)
    kinds = {k["name"]: k for k in d.get("/monitors").json()["kinds"]}
    assert kinds["ks_drift"]["plugin"] == "ks_drift"
    assert [o["name"] for o in kinds["ks_drift"]["options"]] == ["source", "columns", "p_value", "min_rows"]
    [sink] = d.get("/alert-sinks").json()["sinks"]
    assert sink["options"]["path"] == str(d.project / "alerts" / "alerts.jsonl")
