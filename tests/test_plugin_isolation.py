"""No plugin takes the box down: a third-party plugin whose migration, ``configure`` or ``startup`` fails is
disabled and reported while the daemon and every other plugin run; ``[plugins] allow`` restricts what loads.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from conftest import make_project, with_pythonpath

from appliance.testing import DaemonProcess

FAILING = ["bad/failing_migration", "bad/raising_configure", "bad/raising_startup", "bad/unmarked_hooks"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation")
    markers = root / "markers"
    project = make_project(root / "project", ["good/fixture_jobs", *FAILING],
                           f'[fixture]\nmarkers = "{markers}"\n')
    with DaemonProcess(root / "home", project) as d:
        d.markers = markers
        yield d


def plugin(d, name):
    return next(p for p in d.get("/plugins").json()["plugins"] if p["name"] == name)


def failures(d, name):
    return [f for f in d.get("/plugins").json()["failures"] if f["plugin"] == name]


def test_a_failing_migration_disables_its_plugin_and_rolls_its_steps_back(daemon):
    p = plugin(daemon, "failing_migration")
    assert p["status"] == "failed"
    assert "migration" in p["error"] and "no such table" in p["traceback"]
    assert daemon.get("/failing-migration").status_code == 404
    db = sqlite3.connect(daemon.home / "catalog.db")
    try:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
        steps = db.execute("select count(*) from _migrations where migration_set = 'failing_migration'").fetchone()
    finally:
        db.close()
    assert "failing_migration_notes" not in tables and steps == (0,)
    assert daemon.get("/health").json()["status"] == "ok"
    assert plugin(daemon, "fixture_jobs")["status"] == "loaded"


def test_a_configure_that_raises_disables_its_plugin_and_the_daemon_runs(daemon):
    p = plugin(daemon, "raising_configure")
    assert p["status"] == "failed"
    assert "KeyError" in p["error"] and "Traceback" in p["traceback"]
    [f] = [f for f in failures(daemon, "raising_configure") if f["hook"] == "configure"]
    assert "'missing'" in f["message"]
    assert daemon.get("/raising-configure").status_code == 404


def test_a_startup_that_raises_disables_its_plugin_and_it_is_never_shown_loaded(daemon):
    p = plugin(daemon, "raising_startup")
    assert p["status"] == "failed"
    assert "license server" in p["traceback"] and "startup" in p["error"]
    assert daemon.get("/raising-startup").status_code == 404
    assert "raising_startup_job" not in daemon.get("/status").json()["job_kinds"]
    out = daemon.cli("plugins")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("raising_startup "))
    assert "failed" in line and "loaded" not in line
    assert "could not reach the license server" in out.stdout  # the traceback, in the CLI too
    # every other plugin still does its work: a job runs and the fixture's sink hears of it
    job = daemon.wait_job(daemon.submit("sleep", {"seconds": 0})["id"])
    assert job["state"] == "succeeded"
    deadline = time.monotonic() + 5
    while f'"id": {job["id"]}' not in (daemon.markers / "events.jsonl").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.get("/status").json()["plugins"]["failures"] >= 3


def test_a_disabled_plugins_shutdown_is_not_called(tmp_path):
    project = make_project(tmp_path / "p", ["bad/raising_startup"])
    d = DaemonProcess(tmp_path / "home", project).start()
    assert d.stop() == 0
    assert "shutdown of a plugin whose startup failed" not in d.stderr()


def test_hook_named_functions_without_hookimpl_get_a_warning(daemon):
    warnings = daemon.get("/plugins").json()["warnings"]
    mine = [w for w in warnings if "unmarked_hooks" in w]
    assert any("register_routes" in w and "@hookimpl" in w for w in mine), warnings
    assert any("startup" in w for w in mine), warnings
    assert "unmarked_hooks" in daemon.cli("plugins").stdout


def test_a_hung_event_sink_is_reported_after_a_bounded_time(tmp_path):
    project = make_project(tmp_path / "p", ["good/hanging_sink", "good/fixture_jobs"],
                           "[daemon]\nsink_timeout_s = 0.5\n")
    with DaemonProcess(tmp_path / "home", project) as d:
        d.submit("sleep", {"seconds": 0})
        deadline = time.monotonic() + 5
        while not failures(d, "hanging_sink") and time.monotonic() < deadline:
            time.sleep(0.1)
        [f] = failures(d, "hanging_sink")
        assert f["hook"] == "on_event" and "busy" in f["message"] and "s on event" in f["message"]
        assert d.get("/health").json()["status"] == "ok"


def test_a_bad_sink_timeout_is_refused_naming_the_key(tmp_path):
    project = make_project(tmp_path / "p", [], "[daemon]\nsink_timeout_s = 0\n")
    with pytest.raises(RuntimeError) as err:
        DaemonProcess(tmp_path / "home", project).start(timeout=20)
    assert "appliance.toml:2: daemon.sink_timeout_s: expected seconds > 0" in str(err.value)


# ------------------------------------------------------------------------------------------------ allow-list


def test_allow_list_loads_only_the_named_third_party_plugins(tmp_path, ep_site):
    marker = tmp_path / "ran"
    project = make_project(tmp_path / "p", ["good/fixture_jobs", "good/tui_panel"],
                           '[plugins]\nallow = ["tui_panel"]\n')
    (project / "plugins" / "sneaky.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nAPPLIANCE_CONTRACT = '1.0'\n")
    with DaemonProcess(tmp_path / "home", project, env=with_pythonpath(ep_site)) as d:
        report = {p["name"]: p for p in d.get("/plugins").json()["plugins"]}
        assert report["tui_panel"]["status"] == "loaded"
        for name in ("fixture_jobs", "sneaky", "ep_hello"):
            assert report[name]["status"] == "denied" and "allow" in report[name]["error"], report[name]
        assert report["ingest"]["status"] == "loaded"  # built-ins stay unless denied
        assert d.get("/fixture/hello").status_code == 404 and d.get("/ep-hello").status_code == 404
        assert not marker.exists(), "a plugin left out of [plugins] allow ran its code"
        out = d.cli("--help")
        assert "fixture-hello" not in out.stdout  # the CLI honours the project's allow-list too
        assert not marker.exists()


def test_allow_list_naming_a_plugin_loads_it(tmp_path, ep_site):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], '[plugins]\nallow = ["fixture_jobs", "ep_hello"]\n')
    with DaemonProcess(tmp_path / "home", project, env=with_pythonpath(ep_site)) as d:
        report = {p["name"]: p for p in d.get("/plugins").json()["plugins"]}
        assert report["fixture_jobs"]["status"] == report["ep_hello"]["status"] == "loaded"
        assert d.get("/ep-hello").json() == {"from": "entry point"}
        assert d.cli("fixture-hello").stdout.strip() == "cli"
