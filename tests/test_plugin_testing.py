"""The fixtures the appliance ships for plugin authors (``appliance.pytest_plugin``), run as an author runs them:
pytest in the plugin's own directory, with a drop-in, an entry-point package, a dashboard panel rendered with
Pilot, the in-process app and strict mode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURE_PLUGINS

PYTEST = str(Path(sys.executable).parent / "pytest")


def test_the_plugin_author_fixtures(tmp_path):
    package = shutil.copytree(FIXTURE_PLUGINS / "authoring" / "mypanel", tmp_path / "mypanel")
    out = subprocess.run([PYTEST, "-q", "-p", "no:cacheprovider", "--appliance-strict", "tests"], cwd=package,
                         capture_output=True, text=True, timeout=240)
    assert "5 passed, 1 error" in out.stdout, out.stdout[-6000:] + out.stderr[-2000:]
    assert "ERROR at teardown of test_strict_mode_fails_a_test_whose_plugin_failed" in out.stdout
    assert "plugin failures were recorded" in out.stdout and "broken (startup): RuntimeError: broken on purpose" \
        in out.stdout
    assert not (package / "build").exists(), "installing the package for the session wrote into its tree"
