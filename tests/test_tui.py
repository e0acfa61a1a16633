"""The dashboard driven with Textual's Pilot against a real daemon with seeded data (one daemon per module).

Every area is visited; the actions (cancel a job, approve a held batch, promote and roll back a model) go through
their confirmation and are checked in the daemon; ``--readonly`` refuses each of them and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_project
from serving_models import linear_model
from tui_fakes import NOW
from tui_helpers import settle, table, text_of

from appliance.testing import DaemonProcess
from tui.app import ApplianceApp
from tui.client import ApiClient
from tui.widgets.table import PagedTable

TOML = """
[monitoring]
gpu_provider = "fake_gpu"

[fixture]
markers = "{markers}"

[serving]
port = 0

[deployments.fraud]
model = "fraud@champion"

[entities.customer]
join_keys = ["customer_id"]

[feature_views.spend]
source = "data/tx.parquet"
entities = ["customer"]
event_time = "ts"
features = ["amount"]
description = "what a customer spends"

[monitors.box]
kind = "box"
min_disk_free_pct = 101

[ingest]
data_dirs = ["data"]

[sources.events]
kind = "csv"
glob = "data/events/*.csv"
label = "clicked"
[sources.events.columns]
id = "BIGINT"
score = "DOUBLE"
device = "VARCHAR"
clicked = "INTEGER"
[sources.events.guard]
min_history_rows = 500
min_batch_rows = 50
exclude = ["id"]
"""

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def events_csv(rng: random.Random, n: int, start: int, shift: float = 0.0) -> str:
    rows = [f"{i},{rng.gauss(50 + shift, 10):.3f},{rng.choice(['ios', 'web'])},{int(rng.random() < 0.1)}"
            for i in range(start, start + n)]
    return "id,score,device,clicked\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("tui")
    project = make_project(root / "project", ["good/fixture_jobs", "good/tui_panel", "good/fake_gpu",
                                                     "bad/raises_on_import"],
                           TOML.format(markers=root / "markers"))
    (project / "data/events").mkdir(parents=True)
    pq.write_table(pa.table({"customer_id": [1, 2], "ts": [dt.datetime(2100, 1, 1)] * 2, "amount": [12.5, 99.0]}),
                   project / "data/tx.parquet")  # in the future: online values stay fresh whatever the date
    rng = random.Random(7)
    (project / "data/events/a.csv").write_text(events_csv(rng, 1000, 0))
    (project / "data/events/b.csv").write_text(events_csv(rng, 200, 1000, shift=40))
    with DaemonProcess(root / "home", project) as d:
        for v in (1, 2):
            d.register_model("fraud", linear_model(root / f"v{v}.onnx", v))
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        for f in ("a.csv", "b.csv"):
            job = d.wait_job(d.post("/sources/events/ingest", {"files": [f"data/events/{f}"]}).json()["id"])
            assert job["state"] == "succeeded", job
        d.held = d.get("/batches", params={"state": "held"}).json()[0]["id"]
        assert d.wait_job(d.post("/monitors/box/run").json()["id"])["state"] == "succeeded"
        d.prediction = predict(d)
        assert d.wait_job(d.post("/features/spend/materialize").json()["id"])["state"] == "succeeded"
        d.alert = next(a["id"] for a in d.get("/alerts").json() if a["rule"] == "box.disk")
        d.root = root
        yield d


def predict(d: DaemonProcess) -> str:
    """One prediction through the serving port, once the deployment has loaded; its request id."""
    port = d.get("/deployments").json()["port"]
    deadline = time.monotonic() + 30
    while d.get("/deployments/fraud").json()["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
    r = httpx.post(f"http://127.0.0.1:{port}/v2/models/fraud/infer", json={"id": "tui-1", "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}]})
    assert r.status_code == 200, r.text
    return "tui-1"


def seed_runs(catalog: Path, states: list[str]) -> None:
    """Runs written straight into a stopped daemon's catalog (training them would take a minute)."""
    db = sqlite3.connect(catalog)
    with db:
        exp = db.execute("insert into training_experiments (name, created) values ('tui', ?)", [NOW]).lastrowid
        db.executemany("insert into training_runs (experiment_id, spec_name, state, created, spec, params, "
                       "config_hash, seed, data) values (?, 'mlp', ?, ?, '{}', '{}', 'h', 0, '{}')",
                       [(exp, s, NOW + i) for i, s in enumerate(states)])
    db.close()


def app_for(d: DaemonProcess, readonly: bool = False) -> ApplianceApp:
    return ApplianceApp(ApiClient(d.home), readonly=readonly, home=d.home)


async def goto(pilot, app, key: str, table_id: str) -> PagedTable:
    await pilot.press(key)
    await settle(pilot, app, lambda: bool(app.screen.query(f"#{table_id}")) and table(app, table_id).rows_all)
    return table(app, table_id)


# ------------------------------------------------------------------------------------------------ every area


async def test_every_area_shows_the_daemons_data(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: app.first_paint is not None)
        assert "appliance" in str(app.screen.query_one("#health").render())
        gpu = str(app.screen.query_one("#gpu").render())
        assert "Fake GPU 80GB" in gpu and "97" in gpu, gpu  # from the fake provider, through /metrics
        deployments = table(app, "deployments")
        await settle(pilot, app, lambda: deployments.rows_all)
        assert [r["name"] for r in deployments.rows_all] == ["fraud"]
        await settle(pilot, app, lambda: table(app, "alerts").rows_all)
        assert box.alert in {a["id"] for a in table(app, "alerts").rows_all}
        jobs = await goto(pilot, app, "2", "jobs")
        assert {r["kind"] for r in jobs.rows_all} >= {"ingest"}
        assert {r["name"] for r in (await goto(pilot, app, "3", "sources")).rows_all} == {"events"}
        assert box.held in {r["id"] for r in table(app, "batches").rows_all}
        await settle(pilot, app, lambda: table(app, "quarantine") is not None)
        await pilot.press("4")
        await settle(pilot, app)
        views = table(app, "views")
        assert [(v["name"], v["rows"]) for v in views.rows_all] == [("spend", 2)]
        await settle(pilot, app, lambda: "spend" in str(app.screen.query_one("#view-detail").render()))
        await pilot.press("l", *"customer_id=1", "enter")
        await settle(pilot, app, lambda: "12.5" in str(app.screen.query_one("#lookup-result").render()))
        assert "12.5" in str(app.screen.query_one("#lookup-result").render())
        await pilot.press("escape")
        await pilot.press("5")
        await settle(pilot, app)
        assert app.current_mode == "experiments" and table(app, "runs").rows_all == []
        models = await goto(pilot, app, "6", "models")
        assert [m["name"] for m in models.rows_all] == ["fraud"]
        await settle(pilot, app, lambda: len(table(app, "versions").rows_all) == 2)
        serving = await goto(pilot, app, "7", "deployments")
        assert serving.rows_all[0]["name"] == "fraud" and serving.rows_all[0]["requests"] >= 1
        await settle(pilot, app, lambda: table(app, "predictions").rows_all)
        assert [p["request_id"] for p in table(app, "predictions").rows_all] == [box.prediction]
        monitors = await goto(pilot, app, "8", "monitors")
        assert monitors.rows_all[0]["name"] == "box"
        assert "box.disk" in str(app.screen.query_one("#monitors").get_row_at(0))
        monitors.focus()
        await pilot.press("enter")
        await settle(pilot, app)
        assert not app._notifications, [(n.title, n.message) for n in app._notifications]
        runs = str(app.screen.query_one("#detail-body").render())
        assert "FIRING" in runs and "box.disk" in runs and "box_disk_free_pct" in runs, runs
        await pilot.press("escape")
        plugins = await goto(pilot, app, "9", "plugins")
        assert {"fixture_jobs", "tui_panel", "registry"} <= {p["name"] for p in plugins.rows_all}
        plugins.move_cursor(row=next(i for i, p in enumerate(plugins.shown) if p["name"] == "raises_on_import"))
        await pilot.press("enter")
        await settle(pilot, app)
        detail = str(app.screen.query_one("#detail-body").render())
        assert "failed" in detail and "Traceback" in detail and "this plugin is broken at import" in detail
        await pilot.press("escape")
        await pilot.click("#nav", offset=(14, 0))  # the mouse works too: the "2 Jobs" tab
        await settle(pilot, app, lambda: app.current_mode == "jobs")
        assert app.current_mode == "jobs"


async def test_the_daemon_log_is_followed(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: app.first_paint is not None)
        await pilot.press("colon", *"log", "enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "DaemonLog")
        await pilot.pause(0.3)
        log = app.screen.query_one("#daemon-log")
        written = (box.home / "logs" / "daemon.log").read_text().splitlines()
        assert written and written[-1] in list(log.lines)


async def test_hook_register_tui_panels(box):
    """A fixture plugin's panels are listed by the daemon and rendered in the Panels area with its data."""
    listed = {p["name"]: p for p in box.get("/tui/panels").json()}
    assert listed["queues"]["plugin"] == "tui_panel" and listed["queues"]["columns"] == ["queue", "depth"]
    assert listed["license"]["kind"] == "keyvalue"
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        queues = await goto(pilot, app, "0", "panel-queues")
        assert [(r["queue"], r["depth"]) for r in queues.rows_all] == [("emails", 7), ("webhooks", 0)]
        assert "ACME" in str(app.screen.query_one("#panel-license").render())


async def test_filter_narrows_a_table_and_esc_clears_it(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        plugins = await goto(pilot, app, "9", "plugins")
        everyone = len(plugins.shown)
        await pilot.press("slash", *"tui_pan")
        await settle(pilot, app)
        assert [p["name"] for p in plugins.shown] == ["tui_panel"]
        await pilot.press("escape")
        await settle(pilot, app)
        assert len(plugins.shown) == everyone


async def test_help_and_command_palette(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("question_mark")
        await settle(pilot, app)
        assert type(app.screen).__name__ == "Help"
        await pilot.press("escape", "colon", *"models", "enter")
        await settle(pilot, app, lambda: app.current_mode == "models")
        assert app.current_mode == "models"


# ------------------------------------------------------------------------------------------------ actions


async def test_enter_on_a_job_tails_its_log_and_esc_goes_back(box):
    job = box.submit("child_sum", {"numbers": [1, 2]})
    assert box.wait_job(job["id"])["state"] == "succeeded"
    logged = box.get(f"/jobs/{job['id']}/logs").json()
    assert any("child says hello" in line["line"] for line in logged)
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        jobs = await goto(pilot, app, "2", "jobs")
        jobs.move_cursor(row=next(i for i, r in enumerate(jobs.shown) if r["id"] == job["id"]))
        await pilot.press("enter")
        await settle(pilot, app)
        assert type(app.screen).__name__ == "JobDetail"
        assert f"job {job['id']}" in str(app.screen.query_one("#job-head").render())
        log = app.screen.query_one("#job-log")
        assert log.line_count == len(logged) and any("child says hello" in line for line in log.lines)
        await pilot.press("escape")
        assert app.current_mode == "jobs" and type(app.screen).__name__ == "JobsScreen"


async def test_cancel_a_job_through_its_confirmation(box):
    job = box.submit("sleep", {"seconds": 60})
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        jobs = await goto(pilot, app, "2", "jobs")
        jobs.move_cursor(row=next(i for i, r in enumerate(jobs.shown) if r["id"] == job["id"]))
        await pilot.press("c")
        await settle(pilot, app)
        await pilot.press("n")  # declined: nothing happens
        await settle(pilot, app)
        assert box.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running")
        await pilot.press("c")
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app)
    assert box.wait_job(job["id"])["state"] == "cancelled"


async def test_promote_and_roll_back_a_model_through_confirmations(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await goto(pilot, app, "6", "models")
        versions = table(app, "versions")
        await settle(pilot, app, lambda: len(versions.rows_all) == 2)
        versions.focus()
        versions.move_cursor(row=next(i for i, r in enumerate(versions.shown) if r["version"] == 2))
        await pilot.press("p")
        await settle(pilot, app)
        await pilot.press("enter")  # the prompt's default alias: champion
        await settle(pilot, app)
        assert "version 2" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        await settle(pilot, app, lambda: box.get("/models/fraud").json()["aliases"]["champion"] == 2)
        assert box.get("/models/fraud").json()["aliases"]["champion"] == 2
        await settle(pilot, app, lambda: any(a.get("to_version") == 2 for a in table(app, "audit").rows_all))
        await pilot.press("b", "enter")
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app, lambda: box.get("/models/fraud").json()["aliases"]["champion"] == 1)
    assert box.get("/models/fraud").json()["aliases"]["champion"] == 1


async def test_approve_a_held_batch_through_its_confirmation(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await goto(pilot, app, "3", "sources")
        batches = table(app, "batches")
        batches.focus()
        batches.move_cursor(row=next(i for i, r in enumerate(batches.shown) if r["id"] == box.held))
        await pilot.press("a")
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app, lambda: box.get(f"/batches/{box.held}").json()["state"] == "approved")
    assert box.get(f"/batches/{box.held}").json()["state"] == "approved"


async def test_acknowledge_an_alert_through_its_confirmation(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        alerts = await goto(pilot, app, "8", "alerts")
        alerts.focus()
        alerts.move_cursor(row=next(i for i, r in enumerate(alerts.shown) if r["id"] == box.alert))
        await pilot.press("a")
        await settle(pilot, app)
        await pilot.press(*"disk is a test fixture", "enter")  # the note
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app, lambda: box.get(f"/alerts/{box.alert}").json()["state"] == "acked")
    alert = box.get(f"/alerts/{box.alert}").json()
    assert (alert["state"], alert["acked_by"], alert["ack_note"]) == ("acked", "tui", "disk is a test fixture")


async def test_readonly_hides_and_refuses_every_action(box):
    """Read-only: the keys that change the box are not in the footer, pressing them changes nothing, and the
    marker shows."""
    job = box.submit("sleep", {"seconds": 60})
    before = {"champion": box.get("/models/fraud").json()["aliases"]["champion"],
              "batches": box.get("/batches").json(), "alerts": box.get("/alerts", params={"state": "all"}).json()}
    app = app_for(box, readonly=True)
    async with app.run_test(size=(120, 36)) as pilot:
        jobs = await goto(pilot, app, "2", "jobs")
        jobs.move_cursor(row=next(i for i, r in enumerate(jobs.shown) if r["id"] == job["id"]))
        seen = text_of(app)
        assert "Cancel job" not in seen and "READ-ONLY" in seen, seen
        for key in ("c", "n", "p"):
            await pilot.press(key, "y")
        await goto(pilot, app, "3", "sources")
        table(app, "batches").focus()
        for key in ("a", "x"):
            await pilot.press(key, "y")
        await goto(pilot, app, "6", "models")
        await settle(pilot, app, lambda: len(table(app, "versions").rows_all) == 2)
        table(app, "versions").focus()
        assert "Promote" not in text_of(app)
        for key in ("p", "b"):
            await pilot.press(key, "y")
        await goto(pilot, app, "8", "alerts")
        table(app, "alerts").focus()
        await pilot.press("a")
        await settle(pilot, app)
        assert type(app.screen).__name__ == "MonitoringScreen"  # no prompt for a note was opened
        await pilot.press("y")
    assert box.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running")
    assert box.get("/models/fraud").json()["aliases"]["champion"] == before["champion"]
    assert box.get("/batches").json() == before["batches"]
    assert box.get("/alerts", params={"state": "all"}).json() == before["alerts"]
    box.post(f"/jobs/{job['id']}/cancel")


# ------------------------------------------------------------------------------------------------ the daemon


async def test_events_arrive_live(box):
    app = app_for(box)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: app.first_paint is not None)
        await pilot.pause(0.3)
        job = box.submit("sleep", {"seconds": 0.01})
        await settle(pilot, app, lambda: any(e.get("subject") == f"job:{job['id']}" or
                                             e.get("data", {}).get("job_id") == job["id"] for e in app.events))
        assert app.events_seen > 0


async def test_a_lost_daemon_shows_the_banner_and_the_dashboard_reconnects(tmp_path):
    project = make_project(tmp_path / "project", ["good/fixture_jobs"], f'[fixture]\nmarkers = "{tmp_path}"\n')
    d = DaemonProcess(tmp_path / "home", project).start()
    try:
        app = app_for(d)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app, lambda: app.first_paint is not None)
            await pilot.pause(0.3)
            d.kill()
            seed_runs(d.home / "catalog.db", ["succeeded", "failed", "succeeded"])
            await settle(pilot, app, lambda: bool(app.lost))
            assert app.lost
            assert app.screen.query_one("#lost").display
            assert app.screen.has_class("-stale") and "stale" in text_of(app).splitlines()[0]  # the data dims
            await pilot.press("2")  # the dashboard still works while the daemon is away
            await settle(pilot, app)
            d.start()  # a new port: the client finds it through daemon.json
            await settle(pilot, app, lambda: not app.lost, timeout=20)
            assert not app.lost
            assert not app.screen.query_one("#lost").display
            await settle(pilot, app, lambda: table(app, "jobs").rows_all is not None)
            runs = await goto(pilot, app, "5", "runs")  # what was written while it was away shows
            assert [r["state"] for r in runs.rows_all] == ["succeeded", "failed", "succeeded"]
            await pilot.press("slash", *"fail")
            await settle(pilot, app)
            assert [r["state"] for r in runs.shown] == ["failed"]
    finally:
        if d.proc and d.proc.poll() is None:
            d.stop()


async def test_no_daemon_offers_to_start_one(tmp_path):
    home = tmp_path / "home"
    app = ApplianceApp(ApiClient(home), home=home, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert type(app.screen).__name__ == "NoDaemon"
        assert str(home.resolve()) in str(app.screen.query_one("#nodaemon-text").render())
        await pilot.press("s")  # read-only: refused, nothing started
        await settle(pilot, app)
        assert not (home / "daemon.json").exists()
