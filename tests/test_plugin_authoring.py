"""Plugin authoring: ``appliance plugin new`` yields a package that installs and passes its own tests, the
example third-party plugin passes its tests as installed, and docs/plugins.md matches the hook docstrings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import with_pythonpath

from appliance import docs

REPO = Path(__file__).parent.parent


def appliance_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def install_and_test(package: Path, site: Path) -> subprocess.CompletedProcess:
    """``pip install --target`` (no dependencies: the appliance is already here), then its tests in a subprocess."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(package)],
                   check=True, capture_output=True)
    # Run the tests from a copy holding only them (and the pytest settings), so the package is imported from
    # where it was installed.
    tests = site.parent / f"{package.name}-tests"
    shutil.copytree(package / "tests", tests / "tests")
    shutil.copy(package / "pyproject.toml", tests)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tests,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, **with_pythonpath(site)})


def test_plugin_new_yields_a_package_that_installs_and_whose_tests_pass(tmp_path):
    out = appliance_cli("plugin", "new", "demo_plugin", "--dir", str(tmp_path / "src"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    package = tmp_path / "src" / "demo_plugin"
    assert '[project.entry-points.appliance]\ndemo_plugin = "demo_plugin"' in (package / "pyproject.toml").read_text()
    source = (package / "demo_plugin" / "__init__.py").read_text()
    for hook in ("register_migrations", "register_job_kinds", "register_routes", "register_commands", "configure",
                 "startup", "shutdown", "on_event"):
        assert f"@hookimpl\ndef {hook}(" in source, hook
    result = install_and_test(package, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout


def test_plugin_new_refuses_a_bad_name_and_an_existing_directory(tmp_path):
    out = appliance_cli("plugin", "new", "Slack-Alerts", cwd=tmp_path)
    assert out.returncode == 1 and "must be a Python identifier in lowercase" in out.stderr
    (tmp_path / "taken").mkdir()
    out = appliance_cli("plugin", "new", "taken", cwd=tmp_path)
    assert out.returncode == 1 and "already exists" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("example, passed", [
    ("webhook_sink_and_source", 4),  # an alert webhook (on_event) and a source kind for European CSV
    ("sqlite_source", 4),            # a source kind with its own options, told the source's name
    ("ks_drift", 7),                 # a monitor kind with string and list options, and an alert sink
    ("slow_jobs_panel", 3),          # a route, a dashboard panel reading it, and a command
])
def test_an_example_plugin_passes_its_tests_as_installed(tmp_path, example, passed):
    package = tmp_path / example
    # A copy, so the build leaves nothing behind in the repository.
    shutil.copytree(REPO / "examples" / example, package,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = install_and_test(package, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert f"{passed} passed" in result.stdout


def test_docs_plugins_md_matches_the_hook_docstrings():
    page = (REPO / "docs" / "plugins.md").read_text()
    assert page == docs.render(), "docs/plugins.md is out of date: run `python -m appliance.docs > docs/plugins.md`"


def test_plugin_new_refuses_names_that_would_collide(tmp_path):
    cases = {
        "appliance": "the appliance's own package",
        "ingest": "a built-in plugin",
        "plugins": "the appliance's own package",
        "sqlite_stats": "SQLite reserves",
        "json": "would shadow the module 'json'",
        "duckdb": "would shadow the module 'duckdb'",
    }
    for name, why in cases.items():
        out = appliance_cli("plugin", "new", name, "--dir", str(tmp_path), cwd=tmp_path)
        assert out.returncode == 1, (name, out.stdout)
        assert why in out.stderr and "Traceback" not in out.stderr, (name, out.stderr)
        assert not (tmp_path / name).exists(), name
