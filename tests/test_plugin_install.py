"""Install and reload: `appliance plugin install SPEC` pips a package into the daemon's environment and loads it
without a restart, `appliance plugin reload NAME` reads a drop-in again, and `apply` says when only a restart
will do."""

from __future__ import annotations

import shutil

import httpx
from conftest import FIXTURE_PLUGINS, make_project

from appliance.testing import DaemonProcess

DROPIN = '''\
from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_routes(register):
    register(Route("GET", "/reloadable", lambda request: {{"version": {version}}}))
'''


def test_plugin_install_loads_a_package_into_the_running_daemon(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    package = shutil.copytree(FIXTURE_PLUGINS / "ep_package", tmp_path / "ep_package")
    # pip's own settings stand in for the daemon's virtualenv: a private target, no index, no build isolation.
    env = {"PIP_TARGET": str(site), "PYTHONPATH": str(site), "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}
    with DaemonProcess(tmp_path / "home", make_project(tmp_path / "p"), env=env) as d:
        assert d.get("/ep-hello").status_code == 404
        out = d.cli("plugin", "install", str(package), timeout=120)
        assert out.returncode == 0, out.stderr
        assert "ep_hello: loaded" in out.stdout
        assert d.get("/ep-hello").json() == {"from": "entry point"}
        report = {p["name"]: p for p in d.get("/plugins").json()["plugins"]}
        assert (report["ep_hello"]["source"], report["ep_hello"]["version"]) == ("entrypoint", "1.2.3")
        again = d.post("/plugins/install", {"spec": str(package)}, timeout=120).json()
        assert again["plugins"] == [] and "restart the daemon" in again["note"], again


def test_plugin_install_takes_a_package_not_pip_options(tmp_path):
    with DaemonProcess(tmp_path / "home", make_project(tmp_path / "p")) as d:
        r = d.post("/plugins/install", {"spec": "--index-url=http://attacker.example/simple"})
        assert r.status_code == 400 and "not a pip option" in r.json()["error"]["message"]
        r = httpx.post(d.url + "/api/v1/plugins/install", json={"spec": "anything"})
        assert r.status_code == 401


def test_plugin_reload_reads_a_dropin_again_without_a_restart(tmp_path):
    project = make_project(tmp_path / "p")
    plugin = project / "plugins" / "reloadable.py"
    plugin.write_text(DROPIN.format(version=1))
    with DaemonProcess(tmp_path / "home", project) as d:
        pid = d.info["pid"]
        assert d.get("/reloadable").json() == {"version": 1}
        plugin.write_text(DROPIN.format(version=2))
        out = d.cli("plugin", "reload", "reloadable")
        assert out.returncode == 0 and "reloadable: loaded" in out.stdout, out.stderr
        assert d.get("/reloadable").json() == {"version": 2}
        plugin.write_text(DROPIN.format(version=2) + "undefined_name\n")  # a mistake: fails at import
        out = d.cli("plugin", "reload", "reloadable")
        assert out.returncode == 0 and "reloadable: failed" in out.stdout and "undefined_name" in out.stdout
        assert d.get("/reloadable").status_code == 404
        plugin.write_text(DROPIN.format(version=3))
        assert d.cli("plugin", "reload", "reloadable").returncode == 0
        assert d.get("/reloadable").json() == {"version": 3} and d.get("/status").json()["pid"] == pid


def test_plugin_reload_refuses_what_only_a_restart_reloads(tmp_path, ep_site):
    from conftest import with_pythonpath

    with DaemonProcess(tmp_path / "home", make_project(tmp_path / "p"), env=with_pythonpath(ep_site)) as d:
        out = d.cli("plugin", "reload", "ingest")
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "Restart needed: plugin 'ingest' is a built-in; only drop-ins reload in place" in out.stderr
        for name, status, why in (("ep_hello", 400, "installed package"), ("nope", 404, "no plugin 'nope'")):
            r = d.post(f"/plugins/{name}/reload")
            assert r.status_code == status and why in r.json()["error"]["message"]


def test_apply_says_when_a_restart_is_needed(tmp_path):
    project = make_project(tmp_path / "p", [], '[plugins]\ndeny = []\n')
    with DaemonProcess(tmp_path / "home", project) as d:
        (project / "appliance.toml").write_text('[plugins]\ndeny = ["demo"]\n')
        out = d.cli("apply", str(project))
        assert out.returncode == 1
        assert "Restart needed" in out.stderr and "appliance down && appliance up" in out.stderr, out.stderr
        assert d.get("/plugins").json()["plugins"][-1]["status"] == "loaded"  # nothing changed meanwhile
