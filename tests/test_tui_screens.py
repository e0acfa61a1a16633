"""Every area of the dashboard against a real daemon running the demo project, at 80x24 and 120x36.

The tests read what a person would see (the screen's text as drawn), so a daemon whose answers change shape, or a
layout that pushes something essential off an 80x24 terminal, fails here. The recording the snapshot tests use
is checked against the same daemon (and rewritten from it with ``TUI_RECORD=1``).
"""

from __future__ import annotations

import json
import os

import pytest
from textual_plotext import PlotextPlot
from tui_demo import demo_daemon
from tui_fakes import RECORDING, differences, load, record, shape
from tui_helpers import settle, table, text_of

from tui.app import ApplianceApp
from tui.client import ApiClient

pytestmark = pytest.mark.anyio
SIZES = [(80, 24), (120, 36)]
sizes = pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with demo_daemon(tmp_path_factory.mktemp("tui-demo")) as d:
        yield d


def app_for(d, area: str = "overview", **kw) -> ApplianceApp:
    return ApplianceApp(ApiClient(d.home), home=d.home, area=area, **kw)


async def opened(pilot, app, until=lambda: True):
    await settle(pilot, app, lambda: app.first_paint is not None and until())
    return text_of(app)


def test_recorded_fakes_have_the_daemons_shapes(demo):
    """The snapshot tests' recording answers as this daemon does, route by route."""
    live = record(demo, demo.root)
    if os.environ.get("TUI_RECORD"):
        RECORDING.write_text(json.dumps(live, indent=1, sort_keys=True) + "\n")
    recorded = load()
    assert set(recorded["routes"]) == set(live["routes"])
    problems = {route: differences(shape(recorded["routes"][route]), shape(live["routes"][route]), route)
                for route in live["routes"]}
    assert not {k: v for k, v in problems.items() if v}, problems
    assert "appliance_gpu_utilization_pct" in recorded["metrics"]


# ------------------------------------------------------------------------------------------------ each area


@sizes
async def test_overview_puts_alerts_deployments_and_gpus_first(demo, size):
    app = app_for(demo)
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "alerts").rows_all and table(app, "deployments").rows_all)
        open_alerts = demo.get("/alerts", params={"state": "open"}).json()
        assert open_alerts and open_alerts[0]["rule"].split(".")[0] in seen, seen
        assert "fraud" in seen and "ready" in seen, seen  # the deployment row
        assert "97%" in seen and ("Fake GPU 80GB" in seen or size[0] < 100), seen
        for n in range(30):  # events arrive meanwhile: they never push alerts and deployments off the screen
            app.absorb({"id": 10**6 + n, "time": app.clock(), "type": "job.progress", "subject": "job:1"})
        await settle(pilot, app)
        assert open_alerts[0]["rule"].split(".")[0] in text_of(app)


@sizes
async def test_jobs_show_the_history_and_keep_the_selection_across_a_refresh(demo, size):
    app = app_for(demo, area="jobs")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "jobs").rows_all)
        jobs = table(app, "jobs")
        newest = jobs.rows_all[0]
        assert f" {newest['id']} " in seen and newest["kind"] in seen and "succeeded" in seen, seen
        jobs.move_cursor(row=2)
        chosen = jobs.selected["id"]
        new = demo.submit("sleep", {"seconds": 0.01})
        await settle(pilot, app, lambda: new["id"] in {r["id"] for r in jobs.rows_all}, timeout=15)
        ids = [r["id"] for r in jobs.rows_all]
        assert ids.index(new["id"]) < ids.index(chosen)  # the new job came in above the chosen one
        assert jobs.selected["id"] == chosen  # the same job, not the same row number
        await pilot.press("c")
        await settle(pilot, app)
        assert f"job {chosen}" in str(app.screen.query_one("#question").render())
        await pilot.press("n")


@sizes
async def test_data_shows_sources_batches_and_quarantine(demo, size):
    app = app_for(demo, area="data")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "quarantine").rows_all)
        assert "transactions" in seen and "accepted" in seen
        quarantine = table(app, "quarantine")
        assert {r["rule"] for r in quarantine.rows_all} >= {"min", "not_null"}
        quarantine.focus()
        quarantine.move_cursor(row=1)
        row = quarantine.selected
        await pilot.press("enter")
        await settle(pilot, app)
        assert type(app.screen).__name__ == "Detail"
        body = str(app.screen.query_one("#detail-body").render())
        assert "Quarantined row" in str(app.screen.query_one("#detail-title").render())
        assert str(row["rule"]) in body and "content_hash" not in body  # the row, not its batch


@sizes
async def test_features_show_views_and_their_statistics(demo, size):
    app = app_for(demo, area="features")
    async with app.run_test(size=size) as pilot:
        await opened(pilot, app, lambda: "amount_count_1h" in str(app.screen.query_one("#view-detail").render()))
        assert not [n for n in app._notifications if n.severity == "error"], [n.message for n in app._notifications]
        seen = text_of(app)
        assert "card_velocity" in seen and "merchant_risk" in seen
        detail = str(app.screen.query_one("#view-detail").render())
        assert "amount_count_1h" in detail and "mean" in detail, detail


@sizes
async def test_experiments_chart_the_chosen_metrics(demo, size):
    app = app_for(demo, area="experiments")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: app.screen.query(PlotextPlot) and app.screen.curves_keys)
        assert "fraud" in seen and "succeeded" in seen
        assert app.screen.query_one("#curves-chart", PlotextPlot).display
        keys = app.screen.curves_keys
        assert {"val_auc", "val_loss"} <= set(keys) and not [k for k in keys if k.startswith("system/")], keys


@sizes
async def test_models_show_versions_and_the_champion(demo, size):
    app = app_for(demo, area="models")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "versions").rows_all)
        assert "fraud" in seen and "champion" in seen


async def test_a_versions_detail_shows_its_lineage_down_to_the_ingest_batches(demo):
    chain = demo.get("/models/fraud/versions/1/lineage").json()
    batches = {b["id"]: b for v in chain["views"] for b in v["batches"]}
    assert batches
    app = app_for(demo, area="models")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "versions").rows_all)
        versions = table(app, "versions")
        versions.focus()
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Detail")
        body = str(app.screen.query_one("#detail-body").render())
        assert f"training set {chain['data']['id']} fraud_train" in body, body
        for b in batches.values():
            assert f"batch {b['id']}  {b['file']}  {b['content_hash']}  {b['rows']} rows" in body, body


@sizes
async def test_serving_refreshes_while_traffic_runs(demo, size):
    app = app_for(demo, area="serving")
    async with app.run_test(size=size) as pilot:
        await opened(pilot, app, lambda: table(app, "deployments").rows_all)
        before = table(app, "deployments").rows_all[0]["requests"]
        port = demo.get("/deployments").json()["port"]
        import httpx

        body = {"inputs": [{"name": "card_id", "datatype": "INT64", "shape": [1], "data": [1001]},
                           {"name": "merchant_id", "datatype": "INT64", "shape": [1], "data": [2]},
                           {"name": "amount", "datatype": "FP32", "shape": [1], "data": [12.5]},
                           {"name": "categorical", "datatype": "BYTES", "shape": [1, 1], "data": [["fuel"]]}]}
        for _ in range(5):
            assert httpx.post(f"http://127.0.0.1:{port}/v2/models/fraud/infer", json=body).status_code == 200
        await settle(pilot, app, lambda: table(app, "deployments").rows_all[0]["requests"] >= before + 5, timeout=8)
        assert table(app, "deployments").rows_all[0]["requests"] >= before + 5
        assert app.screen.query_one("#serving-chart", PlotextPlot).display


@sizes
async def test_monitoring_shows_drift_per_feature_and_alert_history(demo, size):
    app = app_for(demo, area="monitoring")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "drift").rows_all)
        assert "fraud_drift" in seen
        drift = {r["column"]: r for r in table(app, "drift").rows_all}
        assert "amount" in drift and drift["amount"]["statistic"] is not None
        assert app.screen.query_one("#drift-chart", PlotextPlot).display


@sizes
async def test_plugins_list_the_loaded_ones(demo, size):
    app = app_for(demo, area="plugins")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app, lambda: table(app, "plugins").rows_all)
        assert "serving" in seen and "loaded" in seen


@sizes
async def test_panels_say_so_when_no_plugin_contributes_one(demo, size):
    app = app_for(demo, area="panels")
    async with app.run_test(size=size) as pilot:
        seen = await opened(pilot, app)
        assert "no plugin contributes a panel" in seen, seen


async def test_a_schedule_is_paused_and_resumed(demo):
    app = app_for(demo, area="jobs")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "schedules").rows_all)
        schedules = table(app, "schedules")
        schedules.focus()
        for paused in (True, False):
            await pilot.press("t")
            await settle(pilot, app, lambda: app.screen.query("#question"))
            assert ("Pause" if paused else "Resume") in str(app.screen.query_one("#question").render())
            await pilot.press("y")
            await settle(pilot, app, lambda p=paused: table(app, "schedules").rows_all[0].get("paused") is p)
            nightly = next(s for s in demo.get("/schedules").json() if s["name"] == "nightly")
            assert nightly["paused"] is paused and (nightly["next_fire"] is None) is paused
            assert ("paused" in text_of(app)) is paused
