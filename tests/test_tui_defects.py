"""The dashboard defects a user reported (issue #21), each pinned by the test that showed it.

These run on the recorded demo daemon (``tui_fakes``: recorded from, and checked against, the real one), with a
frozen clock, unless the defect needs a daemon process (starting one, attaching to the demo's).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import make_project
from textual import events
from textual.widgets import OptionList
from tui_fakes import METRICS, NOW, ROUTES, FakeApi, more_gpus
from tui_helpers import settle, table, text_of

from appliance.cli.client import Client
from appliance.testing import DaemonProcess
from tui.app import ApplianceApp
from tui.client import ApiClient
from tui.widgets.format import clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def fake_app(area: str = "overview", api: FakeApi | None = None, **kw) -> ApplianceApp:
    return ApplianceApp(api or FakeApi(), live=False, clock=kw.pop("clock", lambda: NOW), area=area, **kw)


async def opened(pilot, app, until=lambda: True) -> None:
    await settle(pilot, app, lambda: app.first_paint is not None and until())


async def test_s_sorts_by_the_next_column_and_the_header_says_so():
    runs = [{**ROUTES["/runs"][0], "id": i, "step": 100 - i} for i in (12, 11, 10)]
    app = fake_app("experiments", FakeApi({"/runs": runs}))
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "runs").rows_all)
        shown = lambda: [r["id"] for r in table(app, "runs").shown]  # noqa: E731
        assert shown() == [12, 11, 10]
        await pilot.press("s")  # the first column: Run, ascending
        assert shown() == [10, 11, 12] and "Run ▲" in text_of(app)
        await pilot.press("S")
        assert shown() == [12, 11, 10] and "Run ▼" in text_of(app)


async def test_run_curves_chart_validation_metrics_not_system_ones():
    app = fake_app("experiments")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: "val_loss" in text_of(app))
        seen = text_of(app)
        assert "val_auc" in seen and "val_loss" in seen, seen


async def test_a_failed_jobs_error_reads_in_full():
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "/srv/project/plugins/step{i}.py", line {i}, in run\n    raise_it(step={i})\n' for i in range(8)) + \
        "ValueError: the reference window is empty for every feature of deployment fraud"
    job = {**ROUTES["/jobs"][0], "id": 99, "state": "failed", "error": trace}
    app = fake_app("jobs", FakeApi({"/jobs": [job], "/jobs/99": job, "/jobs/99/logs": []}))
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "jobs").rows_all)
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "JobDetail")
        await pilot.pause(0.3)
        shown = str(app.screen.query_one("#job-error-text").render())
        assert "for every feature of deployment fraud" in shown and "step7.py" in shown, shown


async def test_a_model_versions_metrics_read_in_full():
    app = fake_app("models")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "versions").rows_all)
        table(app, "versions").focus()
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Detail")
        metrics = ROUTES["/models/fraud/versions/1"]["metrics"]
        body = str(app.screen.query_one("#detail-body").render())
        assert all(repr(v) in body for v in metrics.values()), body  # the last one too, not cut at 60 characters


async def test_times_read_as_dates_and_bytes_as_sizes_in_details():
    app = fake_app("data")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "batches").rows_all)
        table(app, "batches").focus()
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Detail")
        body = str(app.screen.query_one("#detail-body").render())
        batch = ROUTES["/batches"][0]
        assert clock(batch["mtime"]) in body and "KiB" in body and "e+0" not in body, body
        await pilot.press("escape", "8")
        await settle(pilot, app, lambda: table(app, "monitors").rows_all)
        monitors = table(app, "monitors")
        monitors.move_cursor(row=next(i for i, m in enumerate(monitors.shown) if m["name"] == "box"))
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Detail")
        body = str(app.screen.query_one("#detail-body").render())
        assert "box_disk_free_bytes" in body and "GiB" in body and "e+1" not in body, body


async def test_keys_typed_right_after_slash_reach_the_filter():
    app = fake_app("plugins")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "plugins").rows_all)
        for key, char in [("slash", "/"), *((c, c) for c in "serv")]:  # as fast as a terminal sends them
            app._driver.send_message(events.Key(key, char))
        await settle(pilot, app)
        assert app.screen.query_one("#filter").value == "serv"
        plugins = table(app, "plugins")
        assert "serving" in {p["name"] for p in plugins.shown} and len(plugins.shown) < len(plugins.rows_all)


@pytest.mark.parametrize("width", [80, 100, 110, 115, 121, 200])
async def test_read_only_marker_shows_at_every_width(width):
    app = fake_app("jobs", readonly=True)
    async with app.run_test(size=(width, 30)) as pilot:
        await opened(pilot, app)
        nav = text_of(app).splitlines()[0]
        assert "READ-ONLY" in nav or nav.startswith("RO "), nav
        assert "Cancel job" not in text_of(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_gpu_has_a_line_or_is_counted(size):
    app = fake_app(api=FakeApi(metrics=more_gpus(METRICS, 6)))
    async with app.run_test(size=size) as pilot:
        await opened(pilot, app)
        box = str(app.screen.query_one("#gpu").render())
        lines = [line for line in box.splitlines() if "%" in line and "mem" in line]
        more = [line for line in box.splitlines() if "more" in line]
        assert len(lines) >= 2 and more and f"+{6 - len(lines)} more" in more[0], box


async def test_q_in_a_detail_view_goes_back_instead_of_quitting():
    app = fake_app("jobs")
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "jobs").rows_all)
        await pilot.press("enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "JobDetail")
        await pilot.press("q")
        await settle(pilot, app)
        assert app.is_running and type(app.screen).__name__ == "JobsScreen"


@pytest.mark.parametrize("area", ["overview", "jobs", "data", "features", "experiments", "models", "serving",
                                  "monitoring", "plugins", "panels"])
async def test_help_lists_exactly_the_keys_that_work(area):
    app = fake_app(area)
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app)
        screen = app.screen
        await pilot.press("question_mark")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "Help")
        text = str(app.screen.query_one("#detail-body").render())
        lines = text.splitlines()
        for binding in type(screen).BINDINGS:
            key = app.get_key_display(binding)
            assert any(line.split()[:1] == [key] and line.endswith(binding.description) for line in lines), \
                (binding.key, binding.description, text)


async def test_relative_times_age_while_the_screen_shows():
    now = [NOW]
    app = fake_app("jobs", clock=lambda: now[0])
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "jobs").rows_all)
        before = text_of(app)
        now[0] += 3 * 3600
        await pilot.pause(1.3)
        assert "3h ago" in text_of(app) and "3h ago" not in before


async def test_a_screenshot_is_saved_without_a_downloads_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, app)
        app.deliver_screenshot(filename="shot.svg")
        deadline = time.monotonic() + 5
        while not (tmp_path / "shot.svg").exists() and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        assert (tmp_path / "shot.svg").exists()
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_n_queues_a_job_with_its_parameters():
    api = FakeApi(replies={"/jobs": {"id": 1000}})
    app = fake_app("jobs", api)
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app, lambda: table(app, "jobs").rows_all)
        await pilot.press("n")
        await settle(pilot, app, lambda: app.screen.query(OptionList))
        choices = app.screen.query_one(OptionList)
        choices.highlighted = next(i for i in range(choices.option_count)
                                   if choices.get_option_at_index(i).id == "materialize")
        await pilot.press("enter")  # the kind
        await settle(pilot, app, lambda: app.screen.query("#answer"))
        last = next(j for j in ROUTES["/jobs"] if j["kind"] == "materialize")
        assert json.loads(app.screen.query_one("#answer").value) == last["params"]
        await pilot.press("enter", "y")  # the parameters as the last materialize had them, then confirm
        await settle(pilot, app)
    assert api.posted == [("/jobs", {"kind": "materialize", "params": last["params"]})]


async def test_the_command_line_takes_arguments():
    api = FakeApi()
    app = fake_app(api=api)
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app)
        await pilot.press("colon", *"jobs monitor", "enter")
        await settle(pilot, app, lambda: app.current_mode == "jobs" and table(app, "jobs").rows_all)
        assert {r["kind"] for r in table(app, "jobs").shown} == {"monitor"}
        await pilot.press("colon", *"run nightly", "enter")
        await settle(pilot, app, lambda: app.screen.query("#question"))
        await pilot.press("y")
        await settle(pilot, app)
    assert api.posted == [("/pipelines/nightly/run", {})]


# ------------------------------------------------------------------------------------------------ no daemon


async def test_the_no_daemon_screen_starts_the_daemon_with_its_project(tmp_path, monkeypatch):
    project = make_project(tmp_path / "project", [], "")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "tui.json").write_text(json.dumps({"project": str(project)}))  # the dashboard saw it served
    monkeypatch.chdir(tmp_path)  # no appliance.toml here
    app = ApplianceApp(ApiClient(home), home=home)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app, lambda: type(app.screen).__name__ == "NoDaemon")
            await pilot.pause(0.2)  # drawn
            assert str(project) in str(app.screen.query_one("#nodaemon-text").render())
            await pilot.press("s")
            await settle(pilot, app, lambda: app.first_paint is not None, timeout=30)
            status = await app.api.get("/status")
        assert status["project"] == str(project)
    finally:
        if (home / "daemon.json").exists():
            Client(home).post("/shutdown")
            deadline = time.monotonic() + 30
            while (home / "daemon.json").exists() and time.monotonic() < deadline:
                time.sleep(0.1)


async def test_the_no_daemon_screen_attaches_to_the_demos_daemon(tmp_path):
    """``make run`` (``appliance demo``) keeps its daemon on ``<home>-demo``; ``appliance`` on the usual home
    finds it."""
    home = tmp_path / "appliance"
    with DaemonProcess(tmp_path / "appliance-demo", make_project(tmp_path / "project")) as demo:
        app = ApplianceApp(ApiClient(home), home=home)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app, lambda: type(app.screen).__name__ == "NoDaemon")
            await pilot.pause(0.2)  # drawn
            assert str(demo.home) in str(app.screen.query_one("#nodaemon-text").render())
            await pilot.press("d")
            await settle(pilot, app, lambda: app.first_paint is not None, timeout=20)
            status = await app.api.get("/status")
        assert status["pid"] == demo.proc.pid and os.path.samefile(status["home"], Path(demo.home))


# ------------------------------------------------------------------------------------------------ build items


async def test_the_chosen_theme_is_remembered(tmp_path):
    first = ApplianceApp(FakeApi(), live=False, clock=lambda: NOW, home=tmp_path)
    async with first.run_test(size=(80, 24)) as pilot:
        await opened(pilot, first)
        await pilot.press("colon", *"theme nord", "enter")
        await settle(pilot, first)
        assert first.theme == "nord"
    again = ApplianceApp(FakeApi(), live=False, clock=lambda: NOW, home=tmp_path)
    async with again.run_test(size=(80, 24)) as pilot:
        assert again.theme == "nord"


async def test_u_shows_every_gpu_with_its_history_and_processes():
    app = fake_app(api=FakeApi(metrics=more_gpus(METRICS, 3)))
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app)
        await pilot.press("u")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "GpuView" and app.screen.query("#gpu2-chart"))
        seen = str(app.screen.query_one("#gpu2-text").render())
        assert "GPU 2" in seen and "pid 4242" in seen and "250 / 700 W" in seen, seen
        await pilot.press("q")
        await settle(pilot, app)
        assert type(app.screen).__name__ == "OverviewScreen"


async def test_events_are_browsed_by_type():
    events_ = [{"id": i, "time": NOW - i, "type": t, "subject": "x", "data": {}, "source": "appliance"}
               for i, t in enumerate(["alert.raised", "job.succeeded", "alert.resolved", "job.failed"])]
    app = fake_app(api=FakeApi({"/events": list(reversed(events_))}))
    async with app.run_test(size=(120, 36)) as pilot:
        await opened(pilot, app)
        await pilot.press("colon", *"events alert.", "enter")
        await settle(pilot, app, lambda: type(app.screen).__name__ == "EventLog" and table(app, "event-list").rows_all)
        assert [r["type"] for r in table(app, "event-list").rows_all] == ["alert.raised", "alert.resolved"]
