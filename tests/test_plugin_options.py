"""Options for what plugins register: a source kind, monitor kind, job kind and trainer declare theirs
(``appliance.Options``); the host checks the project's tables and a job's params against them, and a mistake
names file, line and key (or the param) like every other configuration error."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_project

from appliance.testing import DaemonProcess

TOML = """\
[ingest]
data_dirs = ["data"]

[sources.people]
kind = "keyed"
table = "crm_people"
sep = ";"
glob = "data/*.csv"

[monitors.probe]
kind = "option_probe"
column = "amount"
columns = ["a", "b"]
mode = "loose"

[monitors.legacy]
kind = "legacy_probe"
label = "y"
names = ["a"]
anything = 3
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    project = make_project(root / "project", ["good/option_kinds"], TOML)
    (project / "data").mkdir()
    (project / "data" / "a.csv").write_text("id;name\n1;ada\n2;bob\n")
    with DaemonProcess(root / "home", project) as d:
        d.project = project
        yield d


def apply(d, toml: str):
    (d.project / "appliance.toml").write_text(toml)
    return d.cli("apply", str(d.project))


def test_a_source_kind_takes_its_own_options_and_is_told_the_source_name(daemon):
    job = daemon.wait_job(daemon.post("/sources/people/ingest").json()["id"])
    assert job["state"] == "succeeded", job
    assert [r[:2] for r in daemon.get("/sources/people/rows").json()["rows"]] == [[1, "ada"], [2, "bob"]]
    assert daemon.get("/option-kinds/seen").json()["read"] == {
        "source": "people", "options": {"table": "crm_people", "sep": ";"}}


@pytest.mark.parametrize("change, error", [
    ('table = "crm_people"', "appliance.toml:6: sources.people.table: expected a string, got int 5"),
    ('sep = ";"', "appliance.toml:7: sources.people.sep: expected one of ',', ';', '|', got '\\t'"),
    ('table = "crm_people"\n', "appliance.toml:4: sources.people: table is required"),
    ('sep = ";"\n', "appliance.toml:7: sources.people.sepp: unknown key; did you mean 'sep'?"),
])
def test_source_option_errors_name_file_line_and_key(daemon, change, error):
    bad = {'table = "crm_people"': "table = 5", 'sep = ";"': 'sep = "\\t"',
           'table = "crm_people"\n': "", 'sep = ";"\n': 'sepp = ";"\n'}[change]
    out = apply(daemon, TOML.replace(change, bad, 1))
    assert out.returncode == 1 and error in out.stderr, out.stderr
    assert apply(daemon, TOML).returncode == 0


def test_a_plugin_monitor_takes_string_and_list_options(daemon):
    job = daemon.wait_job(daemon.post("/monitors/probe/run").json()["id"])
    assert job["state"] == "succeeded", job
    run = daemon.get("/monitors/probe").json()["runs"][0]
    assert run["details"] == {"column": "amount", "columns": ["a", "b"], "mode": "loose", "limit": 1.0}
    legacy = daemon.get("/monitors/legacy").json()["options"]
    assert (legacy["label"], legacy["names"], legacy["anything"]) == ("y", ["a"], 3)


@pytest.mark.parametrize("change, bad, error", [
    ('mode = "loose"', 'mode = "medium"', "appliance.toml:14: monitors.probe.mode: expected one of 'strict', "
                                          "'loose', got 'medium'"),
    ('columns = ["a", "b"]', 'columns = ["a", 2]', "appliance.toml:13: monitors.probe.columns: expected a list of "
                                                   "strings, got list ['a', 2]"),
    ('names = ["a"]', 'names = "a"', "appliance.toml:19: monitors.legacy.names: expected a list, got str 'a'"),
])
def test_monitor_option_errors_name_file_line_and_key(daemon, change, bad, error):
    out = apply(daemon, TOML.replace(change, bad, 1))
    assert out.returncode == 1 and error in out.stderr, out.stderr
    assert apply(daemon, TOML).returncode == 0


def test_a_job_kinds_params_are_checked_against_its_options(daemon):
    job = daemon.wait_job(daemon.submit("greet_opts", {"who": "ada"})["id"])
    assert job["result"] == {"greeting": "hello ada"}
    r = daemon.post("/jobs", {"kind": "greet_opts", "params": {"who": 3}})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "job kind 'greet_opts': param 'who': expected a string, got int 3"
    r = daemon.post("/jobs", {"kind": "greet_opts", "params": {"tims": 2}})
    assert r.status_code == 400 and "param 'tims': unknown key; did you mean 'times'?" in r.json()["error"]["message"]


def test_a_pipeline_steps_params_are_checked_with_file_line_and_key(daemon):
    toml = TOML + '\n[pipelines.greet]\n[[pipelines.greet.steps]]\nname = "hi"\nkind = "greet_opts"\nparams = { times = "2" }\n'
    out = apply(daemon, toml)
    assert out.returncode == 1
    assert "appliance.toml:26: pipelines.greet.steps[0].params.times: expected an integer, got str '2'" in out.stderr, out.stderr


def test_trainer_hyperparameters_declared_as_options_are_checked(daemon):
    toml = TOML + ('\n[training.t]\ntrainer = "opts_trainer"\nparquet = "data/x.parquet"\nlabel = "y"\n'
                   '[training.t.hyperparameters]\noptimizer = "rmsprop"\n')
    out = apply(daemon, toml)
    assert out.returncode == 1
    assert "appliance.toml:27: training.t.hyperparameters.optimizer: expected one of 'sgd', 'adam', got 'rmsprop'" \
        in out.stderr, out.stderr
    assert apply(daemon, TOML).returncode == 0


# ------------------------------------------------------------------------------------------------ alert sinks

SINKS = """\
[daemon]
sink_timeout_s = 0.5

[monitors.box]
kind = "box"
min_disk_free_pct = 101

[alert_sinks.audit]
kind = "jsonl_fixture"
path = "{path}"
events = ["raised"]

[alert_sinks.stuck]
kind = "hang_fixture"
"""


def test_hook_register_alert_sinks(tmp_path):
    """A plugin's alert sink kind gets the alerts its [alert_sinks.NAME] table asks for; a hung one is
    reported after [daemon] sink_timeout_s while the other still delivers."""
    out = tmp_path / "alerts.jsonl"
    project = make_project(tmp_path / "p", ["good/alert_sink_fixture"], SINKS.format(path=out))
    with DaemonProcess(tmp_path / "home", project) as d:
        for _ in range(2):  # the second run keeps the alert open: nothing new is raised, nothing sent
            assert d.wait_job(d.post("/monitors/box/run").json()["id"])["state"] == "succeeded"
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        [alert] = [json.loads(line) for line in out.read_text().splitlines()]
        [active] = d.get("/alerts").json()
        assert (alert["event"], alert["rule"], alert["id"]) == ("raised", "box.disk", active["id"])
        assert (alert["subject"], alert["severity"]) == (active["subject"], "warning")
        while not [f for f in d.get("/plugins").json()["failures"] if f["hook"] == "alert sink stuck"] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        [stuck] = [f for f in d.get("/plugins").json()["failures"] if f["hook"] == "alert sink stuck"]
        assert stuck["plugin"] == "alert_sink_fixture" and "busy for" in stuck["message"]
        listed = {s["name"]: s for s in d.get("/alert-sinks").json()["sinks"]}
        assert listed["audit"]["delivered"] == 1 and listed["audit"]["options"]["path"] == str(out)
        (project / "appliance.toml").write_text(SINKS.format(path=out).replace("path =", "pth ="))
        bad = d.cli("apply", str(project))
        assert bad.returncode == 1
        assert "appliance.toml:10: alert_sinks.audit.pth: unknown key; did you mean 'path'?" in bad.stderr, bad.stderr
