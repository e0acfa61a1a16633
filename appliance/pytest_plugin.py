"""Pytest fixtures for plugin authors, loaded by pytest through the ``pytest11`` entry point.

- ``appliance_daemon``: a real daemon in a subprocess, loading your plugin as users get it: installed (an entry
  point), from a package directory you name (``packages=``, pip-installed for the session), or as drop-ins
  (``dropins=``). It has the CLI too (``d.cli(...)``).
- ``appliance_app``: the same daemon built in the test's process (``appliance.testing.InProcessApp``): the
  same loading, migrations, hooks and control API, in milliseconds instead of seconds; for unit tests that
  need no isolation (no CLI, no event stream).
- ``appliance_panel``: a dashboard panel your plugin registers, rendered by the real dashboard (Textual's Pilot)
  against a daemon from ``appliance_daemon``.
- Strict mode (``--appliance-strict``, or ``appliance_strict = true`` in the ini file, or ``strict=True`` on one
  call) fails a test whose daemon recorded any plugin failure: a hook that raised, a plugin refused or disabled.

Importing this module is cheap: it only defines fixtures, and ``appliance.testing`` loads when one is used.

    def test_my_route(appliance_app):
        import my_plugin
        app = appliance_app('[my_plugin]\\ngreeting = "hi"\\n', plugins=[my_plugin])
        assert app.get("/my_plugin/hello").json()["message"] == "hi, world"
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption("--appliance-strict", action="store_true", default=None,
                     help="fail a test whose appliance daemon recorded any plugin failure")
    parser.addini("appliance_strict", "fail a test whose appliance daemon recorded any plugin failure",
                  type="bool", default=False)


def _strict_default(config) -> bool:
    flag = config.getoption("--appliance-strict")
    return bool(flag) if flag is not None else bool(config.getini("appliance_strict"))


def _check_strict(api: Any) -> None:
    """Fail the test if the daemon recorded a plugin failure (the report is read before it stops)."""
    report = api.get("/plugins").json()
    failures = [f"{f['plugin']} ({f['hook']}): {f['message']}" for f in report["failures"]]
    if failures:
        pytest.fail("appliance strict mode: plugin failures were recorded:\n  " + "\n  ".join(failures),
                    pytrace=False)


# ------------------------------------------------------------------------------------------------ packages


@pytest.fixture(scope="session")
def appliance_site(tmp_path_factory):
    """A function: ``appliance_site(package_dir) -> site_dir``, the package pip-installed (without its
    dependencies, into a directory of its own) once per session and content; put ``site_dir`` on
    ``PYTHONPATH`` and a daemon finds the package's entry points as if it were installed."""
    root = tmp_path_factory.mktemp("appliance-site")
    built: dict[str, Path] = {}

    def install(package: Path | str) -> Path:
        package = Path(package).resolve()
        key = _digest(package)
        if key not in built:
            site = root / key
            work = root / f"{key}-src"  # pip builds in a copy, so nothing lands in the author's tree
            shutil.copytree(package, work, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__",
                                                                        ".git", ".venv", "tests"))
            out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                  "--disable-pip-version-check", "--target", str(site), str(work)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"pip could not install {package}:\n{out.stderr[-3000:]}")
            built[key] = site
        return built[key]

    return install


def _digest(package: Path) -> str:
    h = hashlib.sha256(str(package).encode())
    for path in sorted(package.rglob("*")):
        if path.is_file() and not {"build", "__pycache__", ".git", ".venv"} & set(path.parts):
            h.update(str(path.relative_to(package)).encode())
            h.update(str(path.stat().st_mtime_ns).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ daemons


@pytest.fixture
def appliance_daemon(tmp_path, request, appliance_site):
    """A factory: ``appliance_daemon(toml="", *, dropins=(), packages=(), env=None, name="home", strict=None)``
    starts a real daemon and returns it.

    Each daemon gets a fresh home and a project (``appliance.toml`` holding ``toml``) under the test's
    ``tmp_path``, listens on free loopback ports and loads every installed plugin, yours included. ``dropins``
    are ``.py`` files or package directories copied into the project's ``plugins/``; ``packages`` are package
    directories (with a ``pyproject.toml``) installed for the session and loaded by their entry points. The
    returned ``appliance.testing.DaemonProcess`` has ``get``/``post``/``delete`` (control API paths under
    ``/api/v1``), ``submit``/``wait_job``, ``events``, ``cli(*args)`` and ``project``. A daemon that fails to
    start raises ``RuntimeError`` with its stderr (a refused configuration, say). Every daemon is stopped after
    the test; in strict mode, first checked for plugin failures.
    """
    from appliance.testing import DaemonProcess

    started: list[tuple[DaemonProcess, bool]] = []

    def start(toml: str = "", *, dropins: Iterable[Path | str] = (), packages: Iterable[Path | str] = (),
              env: dict | None = None, name: str = "home", strict: bool | None = None) -> DaemonProcess:
        project = _project(Path(tmp_path) / f"{name}-project", toml, dropins)
        env = dict(env or {})
        sites = [str(appliance_site(p)) for p in packages]
        if sites:
            env["PYTHONPATH"] = os.pathsep.join([*sites, *filter(None, [env.get("PYTHONPATH"),
                                                                        os.environ.get("PYTHONPATH")])])
        daemon = DaemonProcess(Path(tmp_path) / name, project, env=env)
        started.append((daemon, _strict_default(request.config) if strict is None else strict))
        return daemon.start()

    yield start
    try:
        for daemon, strict in started:
            if strict and daemon.proc is not None and daemon.proc.poll() is None:
                _check_strict(daemon)
    finally:
        for daemon, _ in started:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


@pytest.fixture
def appliance_app(tmp_path, request):
    """A factory: ``appliance_app(toml="", *, plugins=(), dropins=(), builtins=(), entry_points=False,
    name="home", strict=None)`` builds the daemon in this process and returns it started.

    The returned ``appliance.testing.InProcessApp`` answers ``get``/``post``/``delete``, ``submit``/``wait_job``
    and ``events`` like a daemon from ``appliance_daemon``, and has ``app`` (the ``Appliance`` your hooks
    receive). ``plugins`` are modules or objects to register (your plugin, imported by the test); ``builtins``
    names built-in plugins to load too (none by default), ``entry_points=True`` loads the installed packages'.
    It is stopped after the test (its ``shutdown`` hooks run); in strict mode, first checked for failures.
    """
    from appliance.testing import InProcessApp

    started: list[tuple[InProcessApp, bool]] = []

    def start(toml: str = "", *, plugins: Iterable[Any] = (), dropins: Iterable[Path | str] = (),
              builtins: Iterable[str] = (), entry_points: bool = False, name: str = "home",
              strict: bool | None = None) -> InProcessApp:
        project = _project(Path(tmp_path) / f"{name}-project", toml, dropins)
        app = InProcessApp(Path(tmp_path) / name, project, plugins=plugins, builtins=builtins,
                           entry_points=entry_points)
        started.append((app, _strict_default(request.config) if strict is None else strict))
        return app.start()

    yield start
    try:
        for app, strict in started:
            if strict and app.app is not None:
                _check_strict(app)
    finally:
        for app, _ in started:
            app.stop()


def _project(root: Path, toml: str, dropins: Iterable[Path | str]) -> Path:
    (root / "plugins").mkdir(parents=True, exist_ok=True)
    (root / "appliance.toml").write_text(toml)
    for item in dropins:
        item = Path(item)
        if item.is_dir():
            shutil.copytree(item, root / "plugins" / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(item, root / "plugins" / item.name)
    return root


# ------------------------------------------------------------------------------------------------ panels


@dataclass
class PanelView:
    """A panel as the dashboard showed it: its declaration, the ``rows`` of a table panel, and the ``text``
    on screen (a key-value panel's lines, a table's cells, or the error the panel shows)."""

    name: str
    title: str
    kind: str
    rows: list[dict] = field(default_factory=list)
    text: str = ""


@pytest.fixture
def appliance_panel():
    """A function: ``appliance_panel(daemon, name, *, size=(120, 36), timeout=10) -> PanelView``.

    Opens the real dashboard (Textual, driven by its Pilot) on the Panels area against ``daemon`` (from
    ``appliance_daemon``), waits until the panel ``name`` your plugin registered has read its route, and
    returns what it shows. Needs the dashboard's dependencies (Textual), which the appliance installs.
    """
    return render_panel


def render_panel(daemon: Any, name: str, *, size: tuple[int, int] = (120, 36), timeout: float = 10.0) -> PanelView:
    """See the ``appliance_panel`` fixture. Runs the dashboard on an event loop of its own, so it works from
    plain (not async) tests."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["view"] = asyncio.run(_render(daemon, name, size, timeout))
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name="appliance-panel")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["view"]


async def _render(daemon: Any, name: str, size: tuple[int, int], timeout: float) -> PanelView:
    from tui.app import ApplianceApp
    from tui.client import ApiClient

    app = ApplianceApp(ApiClient(daemon.home), home=daemon.home, area="panels")
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + timeout
        while True:
            await pilot.pause(0.05)
            panels = {p["name"]: p for p in getattr(app.screen, "panels", [])}
            busy = [w for w in app.workers if w.group != "events" and not w.is_finished]
            widgets = app.screen.query(f"#panel-{name}")
            if (panels.get(name) and widgets and not busy) or time.monotonic() > deadline:
                break
        if name not in panels:
            known = ", ".join(panels) or "none"
            raise AssertionError(f"the dashboard lists no panel {name!r}; it lists: {known}")
        widget, declared = widgets.first(), panels[name]
        rows = list(getattr(widget, "rows_all", []))
        if rows:
            keys = list(declared.get("columns") or rows[0])
            text = "\n".join(["  ".join(keys)] + ["  ".join(str(r.get(k)) for k in keys) for r in rows])
        else:
            text = str(widget.render())
        return PanelView(name, declared["title"], declared["kind"], rows, text)
