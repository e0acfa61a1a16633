"""Plugins: discovery from built-ins, entry points and drop-ins; isolation of failures; the contract.

Every hook spec needs a ``test_hook_<name>`` test (see ``test_every_hook_is_documented_and_tested``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_project, with_pythonpath

from appliance import hookspecs
from appliance.host import HOOK_NAMES
from appliance.testing import DaemonProcess

BAD = ["bad/raises_on_import", "bad/raising_sink", "bad/misspelled", "bad/future_contract",
       "bad/later_duplicate", "bad/raising_registration"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, ep_site):
    root = tmp_path_factory.mktemp("plugins")
    markers = root / "markers"
    project = make_project(root / "project", ["good/fixture_jobs", *BAD],
                           f'[fixture]\nmarkers = "{markers}"\n')
    d = DaemonProcess(root / "home", project, env=with_pythonpath(ep_site))
    d.start()
    d.markers = markers
    yield d
    d.stop()


@pytest.fixture(scope="module")
def report(daemon):
    out = daemon.cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def plugin(report, name):
    return next(p for p in report["plugins"] if p["name"] == name)


def failures(report, name):
    return [f for f in report["failures"] if f["plugin"] == name]


# ------------------------------------------------------------------------------------------------ discovery


def test_entry_point_plugin_loads_and_serves_its_route(daemon, report):
    ep = plugin(report, "ep_hello")
    assert (ep["source"], ep["status"], ep["version"]) == ("entrypoint", "loaded", "1.2.3")
    assert daemon.get("/ep-hello").json() == {"from": "entry point"}


def test_dropin_plugin_loads(report):
    p = plugin(report, "fixture_jobs")
    assert (p["source"], p["status"]) == ("dropin", "loaded")
    assert "sleep" in p["registrations"]["job_kinds"]


def test_builtins_load_by_the_same_path(report):
    p = plugin(report, "event_log")
    assert (p["source"], p["status"]) == ("builtin", "loaded")


def test_plugin_raising_on_import_is_reported_with_traceback(daemon, report):
    p = plugin(report, "raises_on_import")
    assert p["status"] == "failed"
    [f] = failures(report, "raises_on_import")
    assert f["hook"] == "import"
    assert "this plugin is broken at import" in f["traceback"]
    assert "Traceback" in f["traceback"]
    assert daemon.get("/health").json()["status"] == "ok"


def test_plugin_raising_in_a_hook_is_isolated_and_reported(daemon):
    # the raising sink fails on every event, yet the other sink (fixture_jobs) still gets each one
    before = daemon.submit("sleep", {"seconds": 0})
    daemon.wait_job(before["id"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = json.loads(daemon.cli("plugins", "--json").stdout)
        sink_failures = [f for f in failures(report, "raising_sink") if f["hook"] == "on_event"]
        if sink_failures:
            break
        time.sleep(0.1)
    assert "sink exploded" in sink_failures[0]["traceback"]
    assert "ValueError" in sink_failures[0]["message"]
    seen = (daemon.markers / "events.jsonl").read_text()
    assert f'"id": {daemon.events(type="job.succeeded")[-1]["id"]}' in seen
    assert plugin(report, "raising_sink")["status"] == "loaded"


def test_unknown_hook_name_is_reported_with_a_suggestion(report):
    p = plugin(report, "misspelled")
    assert p["status"] == "refused"
    assert "regster_routes" in p["error"] and "did you mean 'register_routes'" in p["error"]


def test_incompatible_contract_is_refused_saying_which_version(report):
    p = plugin(report, "future_contract")
    assert p["status"] == "refused"
    assert "needs contract 2.0" in p["error"] and "provides contract 1.1" in p["error"]


def test_duplicate_registration_names_both_plugins(daemon, report):
    [f] = [f for f in failures(report, "later_duplicate") if f["hook"] == "register_job_kinds"]
    assert "'fixture_jobs'" in f["message"] and "'later_duplicate'" in f["message"]
    kinds = {k["name"]: k["plugin"] for k in daemon.get("/job-kinds").json()}
    assert kinds["sleep"] == "fixture_jobs"
    assert kinds["dup_only_mine"] == "later_duplicate"


def test_registration_that_raises_disables_the_plugin_entirely(daemon, report):
    p = plugin(report, "raising_registration")
    assert p["status"] == "failed"
    assert "registration went wrong" in failures(report, "raising_registration")[0]["traceback"]
    assert daemon.get("/half-registered").status_code == 404


def test_failures_are_events_too(daemon):
    failed = {e["data"]["plugin"] for e in daemon.events(type="plugin.failed")}
    assert {"raises_on_import", "misspelled", "future_contract"} <= failed


def test_cli_table_shows_failures(daemon):
    out = daemon.cli("plugins")
    assert out.returncode == 0
    assert "raises_on_import" in out.stdout and "failed" in out.stdout
    assert "needs contract 2.0" in out.stdout


def test_deny_list_skips_a_plugin_and_unknown_allow_name_warns(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs", "bad/raising_sink"],
                           '[plugins]\ndeny = ["raising_sink"]\nallow = ["no_such_plugin"]\n')
    with DaemonProcess(tmp_path / "home", project) as d:
        report = d.get("/plugins").json()
        assert plugin(report, "raising_sink")["status"] == "denied"
        assert any("no_such_plugin" in w for w in report["warnings"])


def test_named_plugin_that_fails_is_a_configuration_error(tmp_path):
    project = make_project(tmp_path / "p", ["bad/raises_on_import"], '[plugins]\nallow = ["raises_on_import"]\n')
    d = DaemonProcess(tmp_path / "home", project)
    with pytest.raises(RuntimeError) as err:
        d.start(timeout=20)
    assert "named in [plugins] allow" in str(err.value) and "broken at import" in str(err.value)
    assert d.proc.returncode != 0


def test_tracing_logs_every_hook_call_with_its_duration(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"])
    with DaemonProcess(tmp_path / "home", project, env={"APPLIANCE_TRACE_PLUGINS": "1"}) as d:
        d.submit("sleep", {"seconds": 0})
        time.sleep(0.5)
        log = d.stderr()
    assert "hook startup plugin=fixture_jobs took" in log
    assert "hook on_event plugin=event_log took" in log


# ------------------------------------------------------------------------------------------------ every hook


def test_hook_register_migrations(daemon):
    assert daemon.get("/fixture/hello").json()["notes_table"] is True


def test_hook_register_job_kinds(daemon):
    job = daemon.submit("sleep", {"seconds": 0.05})
    assert daemon.wait_job(job["id"])["result"] == {"slept": 0.05}


def test_hook_register_routes(daemon):
    assert daemon.get("/fixture/hello", params={"name": "x"}).json()["hello"] == "x"
    r = daemon.post("/fixture/echo", {"a": 1})
    assert (r.status_code, r.json()) == (201, {"got": {"a": 1}})


def test_hook_register_services(daemon):
    started = daemon.events(type="fixture.started")
    assert started[-1]["data"]["greeting"] == "hello daemon"


def test_hook_register_commands(daemon):
    out = daemon.cli("fixture-hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cli"


@pytest.mark.parametrize("how", ["script", "module"])
def test_the_cli_imports_nothing_from_the_current_directory(tmp_path, how):
    """A cloned repository's plugins/ is not the project: `appliance --help` there must not run its code."""
    here = tmp_path / "untrusted"
    (here / "plugins").mkdir(parents=True)
    marker = tmp_path / "ran"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text(__name__)\n"
    (here / "plugins" / "evil.py").write_text(payload)
    (here / "plugins" / "__init__.py").write_text(payload)  # would shadow the built-ins if the cwd were on sys.path
    (here / "tui.py").write_text(payload)
    cli = [str(Path(sys.executable).parent / "appliance")] if how == "script" else [sys.executable, "-m", "appliance"]
    for args in (["--help"], ["deployments"], ["restore", "--help"], ["plugins"]):
        out = subprocess.run([*cli, "--home", str(tmp_path / "home"), *args], cwd=here, capture_output=True,
                             text=True, timeout=60)
        assert "Traceback" not in out.stderr, out.stderr
        assert not marker.exists(), f"{args}: imported {marker.read_text()}"
    assert "restore" in subprocess.run([*cli, "--help"], cwd=here, capture_output=True, text=True).stdout


def test_hook_startup(daemon):
    assert (daemon.markers / "startup").exists()


def test_hook_shutdown(tmp_path):
    markers = tmp_path / "m"
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], f'[fixture]\nmarkers = "{markers}"\n')
    d = DaemonProcess(tmp_path / "home", project).start()
    assert not (markers / "shutdown").exists()
    assert d.stop() == 0
    assert (markers / "shutdown").exists()


def test_hook_on_event(daemon):
    job = daemon.submit("sleep", {"seconds": 0})
    daemon.wait_job(job["id"])
    time.sleep(0.3)
    types = [json.loads(line)["type"] for line in (daemon.markers / "events.jsonl").read_text().splitlines()]
    assert {"job.queued", "job.started", "job.succeeded"} <= set(types)


def test_hook_configure(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], '[fixture]\ngreeting = "hi"\n')
    with DaemonProcess(tmp_path / "home", project) as d:
        (project / "appliance.toml").write_text('[fixture]\n\ngreeting = 42\n')
        out = d.cli("apply", str(project))
        assert out.returncode == 1
        assert "appliance.toml:3: fixture.greeting: expected a string, got 42" in out.stderr
        (project / "appliance.toml").write_text('[fixture]\ngreeting = "hello"\n')
        out = d.cli("apply", str(project), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["changed"] == ["fixture"]


# ------------------------------------------------------------------------------------------------ the contract


def _spec_names() -> list[str]:
    return sorted(HOOK_NAMES)


@pytest.mark.parametrize("hook", _spec_names())
def test_every_hook_is_documented_and_tested(hook):
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert len(doc.strip()) > 40, f"hook {hook} needs a docstring: it is the documentation"
    tests = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_hook_"):
                tests.add(node.name)
    assert f"test_hook_{hook}" in tests, f"hook {hook} has no test_hook_{hook}"
