"""The dashboard on the demo daemon's recorded answers (``tui_fakes``) where a test needs data a daemon would take
minutes to make: a thousand jobs, several runs to compare, a refusal, two polls of a counter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tui_fakes import NOW, ROUTES, FakeApi
from tui_helpers import settle, table

from tui.app import ApplianceApp
from tui.client import ApiError
from tui.widgets.table import PagedTable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def goto(pilot, app, key: str, table_id: str) -> PagedTable:
    await pilot.press(key)
    await settle(pilot, app, lambda: bool(app.screen.query(f"#{table_id}")) and table(app, table_id).rows_all)
    return table(app, table_id)


async def test_a_long_job_history_is_paged_from_the_daemon_with_before():
    history = [{"id": i, "kind": "ingest", "state": "succeeded", "progress": 1.0, "created": NOW - i}
               for i in range(1000, 0, -1)]
    asked = []

    def jobs(limit=100, before=None, state=None):
        asked.append(before)
        rows = [j for j in history if before is None or j["id"] < before]
        return rows[:limit]

    app = ApplianceApp(FakeApi({"/jobs": jobs}), live=False, clock=lambda: NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        jobs_table = await goto(pilot, app, "2", "jobs")
        assert len(jobs_table.rows_all) == 200 and jobs_table.row_count == 50  # one page fetched, less drawn
        while len(jobs_table.rows_all) < 400:
            jobs_table.move_cursor(row=jobs_table.row_count - 1)
            await settle(pilot, app)
        assert jobs_table.row_count == 250
        assert asked[-1] == 801 and jobs_table.rows_all[-1]["id"] == 601


def three_runs() -> list[dict]:
    """The recorded run, and two more like it (the demo trains one)."""
    run = ROUTES["/runs"][0]
    return [{**run, "id": i, "created": run["created"] - 60 * (3 - i)} for i in (3, 2, 1)]


async def test_two_runs_compared_side_by_side():
    diff = {"a": 3, "b": 2, "params": {"hyperparameters.lr": {"a": 0.001, "b": 0.01}},
            "metrics": {"val_auc": {"a": 0.89, "b": 0.86}}, "environment": {}, "data": {}}
    app = ApplianceApp(FakeApi({"/runs": three_runs(), "/runs/compare": diff}), live=False, clock=lambda: NOW,
                       area="experiments")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: table(app, "runs").rows_all)
        await pilot.press("m", "down", "m", "d")
        await settle(pilot, app)
        body = str(app.screen.query_one("#detail-body").render())
        assert "hyperparameters.lr" in body and "0.89" in body and "0.86" in body


async def test_online_lookup_box():
    api = FakeApi(replies={"/features/online": {"features": ["customer_stats:tenure"], "values": [
        {"customer_stats:tenure": 31}]}})
    app = ApplianceApp(api, live=False, clock=lambda: NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        await goto(pilot, app, "4", "views")
        await pilot.press("l", *"customer_id=42", "enter")
        await settle(pilot, app)
        assert api.posted == [("/features/online", {"entity": {"customer_id": "42"}})]
        assert "customer_stats:tenure" in str(app.screen.query_one("#lookup-result").render())


async def test_a_failing_action_is_a_notification_not_a_crash():
    class Refusing(FakeApi):
        async def post(self, path, body=None):
            raise ApiError("alias 'champion' is gated: version 4 has auc 0.88 < 0.9", title="Promotion refused",
                           status=409)

    app = ApplianceApp(Refusing(), live=False, clock=lambda: NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        await goto(pilot, app, "6", "models")
        await settle(pilot, app, lambda: table(app, "versions").rows_all)
        table(app, "versions").focus()
        await pilot.press("p", "enter", "y")
        await settle(pilot, app)
        assert [n.title for n in app._notifications] == ["Promotion refused"]
        assert app.is_running


def test_bare_appliance_without_a_terminal_prints_help_that_names_tui(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance", "--home", str(tmp_path)], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "tui" in out.stdout


async def test_overview_throughput_is_the_request_count_between_two_polls():
    served = iter([1000, 1600])
    now = [NOW]
    dep = ROUTES["/deployments"]["deployments"][0]

    def deployments():
        return {"port": 1, "deployments": [{**dep, "requests": next(served)}]}

    app = ApplianceApp(FakeApi({"/deployments": deployments}), live=False, clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        assert table(app, "deployments").rows_all[0]["rate"] is None  # one reading is no rate yet
        now[0] = NOW + 2
        app.screen.reload()
        await settle(pilot, app)
        assert table(app, "deployments").rows_all[0]["rate"] == 300.0


async def test_on_the_first_row_the_newest_job_stays_in_view():
    """Untouched, the cursor stays on the first row as jobs arrive (the head, as in k9s); moved down, it keeps its
    job (the tests against the real daemon check that)."""
    jobs = [{**ROUTES["/jobs"][0], "id": i} for i in (3, 2, 1)]
    app = ApplianceApp(FakeApi({"/jobs": lambda **kw: jobs}), live=False, clock=lambda: NOW, area="jobs")
    async with app.run_test(size=(120, 36)) as pilot:
        listed = await goto(pilot, app, "2", "jobs")
        jobs[:0] = [{**jobs[0], "id": i} for i in range(50, 3, -1)]  # 47 new jobs: more than a screen
        app.screen.reload()
        await settle(pilot, app, lambda: len(listed.rows_all) == 50)
        assert listed.selected["id"] == 50 and listed.scroll_y == 0
