"""Pipelines across daemon restarts: one catch-up run that lists every missed time, schedules and history kept,
a run in flight resumed, and a bad pipeline configuration refusing the start with file, line and key."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_project
from test_pipelines import pipeline, records, step, wait_run

from appliance.testing import DaemonProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines-restart")
    project = make_project(root / "project", ["good/pipeline_steps"], "[daemon]\ndrain_seconds = 0.2\n")
    with DaemonProcess(root / "home", project) as d:
        d.root = root
        d.project = project
        yield d


def apply(d, toml: str) -> None:
    (d.project / "appliance.toml").write_text("[daemon]\ndrain_seconds = 0.2\n\n" + toml)
    r = d.post("/apply")
    assert r.status_code == 200, r.text


def test_daemon_down_across_three_fire_times_runs_one_catchup(daemon):
    log = str(daemon.root / "nightly.log")
    first = int(time.time()) + 4
    times = [first, first + 1, first + 2]
    # Fires at three seconds of every minute: while the daemon is down those three pass, and the next ones are
    # a minute away, so exactly these three are missed however long the restart takes.
    cron = ",".join(str(t % 60) for t in times) + " * * * * *"
    apply(daemon, pipeline("nightly", [step("job", "step_record", params={"log": log, "label": "nightly"})],
                           schedule=f'{{cron = "{cron}"}}'))
    daemon.stop()
    assert time.time() < first, "the daemon took too long to stop for this test to mean anything"
    time.sleep(max(0.0, first + 2.5 - time.time()))
    daemon.start()
    deadline = time.monotonic() + 20
    while not (runs := daemon.get("/pipelines/nightly/runs").json()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    runs = daemon.get("/pipelines/nightly/runs").json()
    assert len(runs) == 1
    assert runs[0]["trigger"] == "catchup" and runs[0]["missed"] == times
    assert wait_run(daemon, "nightly", runs[0]["id"])["status"] == "succeeded"
    assert len(records(daemon.root / "nightly.log")) == 1
    started = [e for e in daemon.events("pipeline.run_started") if e["data"]["pipeline"] == "nightly"]
    assert [e["data"]["missed"] for e in started] == [times]


def test_schedules_and_history_survive_a_restart(daemon):
    log = str(daemon.root / "tick.log")
    apply(daemon, pipeline("tick", [step("job", "step_record", params={"log": log, "label": "tick"})],
                           schedule="{interval_s = 1}"))
    deadline = time.monotonic() + 20
    while len(before := daemon.get("/pipelines/tick/runs").json()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    daemon.restart()
    listed = {s["name"]: s for s in daemon.get("/schedules").json()}
    assert listed["tick"]["schedule"] == "every 1 s" and listed["tick"]["next_fire"] > time.time() - 1
    deadline = time.monotonic() + 20
    while len(after := daemon.get("/pipelines/tick/runs").json()) < len(before) + 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kept = {r["id"]: r for r in after}
    for old in before:
        assert kept[old["id"]]["trigger"] == old["trigger"] == "schedule"
        assert kept[old["id"]]["scheduled_for"] == old["scheduled_for"]
    # The schedule kept its phase across the restart: every fire is a whole number of seconds from the first.
    fires = sorted(r["scheduled_for"] for r in after)
    assert all(abs((f - fires[0]) - round(f - fires[0])) < 1e-3 for f in fires)
    # Fires due while the daemon restarted were caught up by one run that lists them, not dropped.
    handled = sorted({r["scheduled_for"] for r in after} | {m for r in after for m in r["missed"]})
    assert len([r for r in after if r["trigger"] == "catchup"]) <= 1
    assert [round(b - a) for a, b in zip(handled, handled[1:], strict=False)] == [1] * (len(handled) - 1)
    apply(daemon, "")


def test_run_in_flight_resumes_after_restart(daemon):
    log = str(daemon.root / "resume.log")
    apply(daemon, pipeline("resume", [
        step("first", "step_record", params={"log": log, "label": "first", "seconds": 2}),
        step("second", "step_record", ["first"], params={"log": log, "label": "second"})]))
    run = daemon.post("/pipelines/resume/run").json()
    deadline = time.monotonic() + 10
    while daemon.get(f"/pipelines/resume/runs/{run['id']}").json()["steps"][0]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    daemon.restart()
    got = wait_run(daemon, "resume", run["id"])
    assert got["status"] == "succeeded"
    assert [r["label"] for r in records(daemon.root / "resume.log")] == ["first", "second"]
    assert len(daemon.get("/pipelines/resume/runs").json()) == 1
    # The module's daemon restarts in other tests too: count only this run's resumption.
    resumed = [e["data"]["run_id"] for e in daemon.events("pipeline.run_resumed")]
    assert resumed.count(run["id"]) == 1


def test_bad_pipeline_config_refuses_start(tmp_path):
    toml = pipeline("p", [step("a", "step_record"), step("b", "step_record", ["a", "c"])])
    project = make_project(tmp_path / "project", ["good/pipeline_steps"], toml)
    d = DaemonProcess(tmp_path / "home", project)
    with pytest.raises(RuntimeError) as err:
        d.start()
    assert "appliance.toml:10: pipelines.p.steps[1].depends_on: step 'b' depends on 'c'" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_cli_schedule_list_shows_next_fire(daemon):
    apply(daemon, pipeline("hourly", [step("job", "step_record", params={"log": "/dev/null"})],
                           schedule='{cron = "0 * * * *"}'))
    got = daemon.cli("schedule", "list", "--json")
    assert got.returncode == 0, got.stderr
    hourly = {s["name"]: s for s in json.loads(got.stdout)}["hourly"]
    assert hourly["next_fire"] % 60 == 0 and 0 < hourly["next_fire"] - time.time() <= 3600
    shown = daemon.cli("schedule", "list")
    assert "hourly" in shown.stdout and "cron 0 * * * *" in shown.stdout
