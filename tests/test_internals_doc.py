"""docs/internals.md and the examples in docs/plugins.md, checked against the code: an attribute a hook's
object gains, an event type, a core route or a table without a line in internals.md fails here, and every
hook's example is part of a plugin that loads and works."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from appliance import docs
from appliance.app import Appliance
from appliance.contract import CHANGELOG, CONTRACT_VERSION, HOOKS_ADDED_IN
from appliance.host import HOOK_NAMES
from appliance.jobs.handle import JobHandle
from appliance.testing import InProcessApp

REPO = Path(__file__).parent.parent
INTERNALS = (REPO / "docs" / "internals.md").read_text()


def test_internals_md_documents_every_object_event_route_and_table():
    assert docs.internals_gaps(INTERNALS) == []


def test_the_internals_check_fails_on_an_undocumented_attribute(monkeypatch):
    monkeypatch.setattr(Appliance, "shiny_new_thing", property(lambda self: 1), raising=False)
    monkeypatch.setattr(JobHandle, "eta", lambda self: 0, raising=False)
    assert docs.internals_gaps(INTERNALS) == ["app.shiny_new_thing (Appliance)", "job.eta (JobHandle)"]
    assert "event type job.queued" in docs.internals_gaps(INTERNALS.replace("`job.queued`", "job queued"))
    assert "route GET /health" in docs.internals_gaps(INTERNALS.replace("`GET /health`", "health"))


def test_every_hook_has_an_example_and_the_version_it_arrived_in():
    assert set(docs.examples()) == set(HOOK_NAMES)
    assert set(HOOKS_ADDED_IN) <= set(HOOK_NAMES)
    assert CONTRACT_VERSION in CHANGELOG and all(v in CHANGELOG for v in HOOKS_ADDED_IN.values())
    page = (REPO / "docs" / "plugins.md").read_text()
    assert page.count("*Added in contract ") == len(HOOK_NAMES)


@pytest.fixture
def examples_plugin():
    spec = importlib.util.spec_from_file_location("hook_examples", REPO / "docs" / "hook_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_examples_are_a_working_plugin(tmp_path, examples_plugin):
    toml = ('[notes]\ngreeting = "hello"\n\n[monitors.rows]\nkind = "row_count"\nsource = "orders"\n\n'
            '[alert_sinks.audit]\nkind = "notes_jsonl"\npath = "alerts.jsonl"\n')
    with InProcessApp(tmp_path / "home", toml=toml, plugins=[("notes", examples_plugin)],
                      builtins=("monitoring",)) as a:
        report = a.get("/plugins").json()
        assert report["failures"] == [] and report["warnings"] == []
        assert [n["text"] for n in a.get("/notes").json()["notes"]] == ["hello"]
        assert a.post("/notes", {"text": "second"}).status_code == 201
        assert a.post("/notes", {"text": ""}).status_code == 400
        job = a.wait_job(a.submit("notes-count", {"prefix": "sec"})["id"])
        assert job["result"] == {"count": 1}
        assert a.post("/jobs", {"kind": "notes-count", "params": {"prefix": 1}}).status_code == 400
        assert "appliance_notes_total 2" in a.get("/metrics").text
        sinks = a.get("/alert-sinks").json()
        assert {k["name"] for k in sinks["kinds"]} == {"notes_jsonl"}
        # a Path option is resolved against the project's directory, not the daemon's working directory
        assert sinks["sinks"][0]["options"]["path"] == str(a.app.config.project_dir / "alerts.jsonl")
