"""Shared fixtures: projects with chosen fixture plugins, and real daemons on free loopback ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.testing import DaemonProcess

HERE = Path(__file__).parent
FIXTURE_PLUGINS = HERE / "plugins"
#: Fixture plugins are loaded by daemons, never collected as tests (a plugin package there has tests of its own).
collect_ignore = ["plugins"]


def make_project(root: Path, plugins: list[str] = (), toml: str = "") -> Path:
    """A project directory whose plugins/ holds the named fixture plugins (``good/x`` or ``bad/y``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plugins").mkdir(exist_ok=True)
    for name in plugins:
        shutil.copy(FIXTURE_PLUGINS / f"{name}.py", root / "plugins")
    (root / "appliance.toml").write_text(toml)
    return root


@pytest.fixture(scope="session")
def ep_site(tmp_path_factory) -> Path:
    """The entry-point test plugin, pip-installed into its own directory (not into the venv)."""
    target = tmp_path_factory.mktemp("ep-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(FIXTURE_PLUGINS / "ep_package")],
                   check=True, capture_output=True)
    shutil.rmtree(FIXTURE_PLUGINS / "ep_package" / "build", ignore_errors=True)
    for egg in (FIXTURE_PLUGINS / "ep_package").glob("*.egg-info"):
        shutil.rmtree(egg, ignore_errors=True)
    return target


def with_pythonpath(path: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(path), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture(scope="module")
def jobs_daemon(tmp_path_factory):
    """A daemon with the job fixture plugin, shared by a module's tests."""
    root = tmp_path_factory.mktemp("jobs")
    markers = root / "markers"
    project = make_project(root / "project", ["good/fixture_jobs"],
                           f'[daemon]\nworkers = 4\ngpu_slots = 1\n\n[fixture]\nmarkers = "{markers}"\n')
    with DaemonProcess(root / "home", project) as d:
        d.markers = markers
        d.root = root
        yield d


def threads_of(pid: int | str = "self") -> dict[int, tuple[str, int]]:
    """Each thread of a process: its OS name and nice value."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            out[int(tid)] = (name, os.getpriority(os.PRIO_PROCESS, int(tid)))
        except (OSError, ProcessLookupError):
            pass  # ended meanwhile
    return out
