"""Run with --appliance-strict: every fixture the appliance ships for plugin authors, once each."""

from pathlib import Path

import mypanel

HERE = Path(__file__).parent.parent


def test_in_process(appliance_app):
    app = appliance_app(plugins=[mypanel])
    assert app.get("/mypanel/stats").json() == {"queues": mypanel.STATS}
    assert app.app.registry("tui_panels").owner("mystats") == "mypanel"


def test_package_with_its_cli_and_panel(appliance_daemon, appliance_panel):
    d = appliance_daemon(packages=[HERE])
    record = next(p for p in d.get("/plugins").json()["plugins"] if p["name"] == "mypanel")
    assert (record["source"], record["version"]) == ("entrypoint", "0.3.0")
    assert d.cli("mypanel-stats").stdout.split() == ["emails", "3", "hooks", "0"]
    view = appliance_panel(d, "mystats")
    assert view.title == "My queues" and [(r["queue"], r["depth"]) for r in view.rows] == [("emails", 3), ("hooks", 0)]
    assert "emails" in view.text


def test_dropin(appliance_daemon):
    d = appliance_daemon(dropins=[HERE / "mypanel"])
    record = next(p for p in d.get("/plugins").json()["plugins"] if p["name"] == "mypanel")
    assert record["source"] == "dropin"


def test_strict_mode_fails_a_test_whose_plugin_failed(appliance_app):
    appliance_app(dropins=[HERE / "broken.py"])


def test_strict_mode_can_be_turned_off_for_one_app(appliance_app):
    app = appliance_app(dropins=[HERE / "broken.py"], strict=False)
    assert next(p for p in app.get("/plugins").json()["plugins"] if p["name"] == "broken")["status"] == "failed"
