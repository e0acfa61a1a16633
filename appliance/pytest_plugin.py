"""Pytest fixtures for plugin authors, loaded by pytest through the ``pytest11`` entry point.

Install your plugin (``pip install -e .``) next to the appliance and its tests can start real daemons that load
it from its entry point, exactly as on a user's box::

    def test_my_route(appliance_daemon):
        d = appliance_daemon('[my_plugin]\\ngreeting = "hi"\\n')
        assert d.get("/my_plugin/hello").json()["message"] == "hi, world"

Importing this module is cheap: it only defines fixtures, and ``appliance.testing`` loads when one is used.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def appliance_daemon(tmp_path):
    """A factory: ``appliance_daemon(toml="", *, env=None, name="home")`` starts a real daemon and returns it.

    Each daemon gets a fresh home and a project (``appliance.toml`` holding ``toml``) under the test's
    ``tmp_path``, listens on free loopback ports and loads every installed plugin, yours included. The returned
    ``appliance.testing.DaemonProcess`` has ``get``/``post``/``delete`` (control API paths under ``/api/v1``),
    ``submit``/``wait_job``, ``events`` and ``cli(*args)``. A daemon that fails to start raises
    ``RuntimeError`` with its stderr (a refused configuration, say). Every daemon is stopped after the test.
    """
    from appliance.testing import DaemonProcess

    started: list[DaemonProcess] = []

    def start(toml: str = "", *, env: dict | None = None, name: str = "home") -> DaemonProcess:
        project = Path(tmp_path) / f"{name}-project"
        project.mkdir(parents=True, exist_ok=True)
        (project / "appliance.toml").write_text(toml)
        daemon = DaemonProcess(Path(tmp_path) / name, project, env=env)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
