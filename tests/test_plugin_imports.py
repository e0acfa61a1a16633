"""Imports that cannot be shadowed: neither the test fixture's daemon nor a job's child process imports from the
working directory, so a folder named ``appliance/`` or ``triton/`` there changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import make_project

from appliance.testing import DaemonProcess

PYTEST = str(Path(sys.executable).parent / "pytest")


def test_plugin_tests_beside_a_folder_named_appliance_still_start_daemons(tmp_path):
    """`pytest my_plugin` from a directory that also holds an `appliance/` folder (a checkout, a copy)."""
    work = tmp_path / "work"
    (work / "appliance").mkdir(parents=True)
    (work / "appliance" / "__init__.py").write_text("raise ImportError('the shadow appliance was imported')\n")
    (work / "appliance" / "__main__.py").write_text("raise SystemExit('the shadow appliance ran')\n")
    (work / "my_plugin" / "tests").mkdir(parents=True)
    (work / "my_plugin" / "tests" / "test_it.py").write_text(
        "def test_daemon_starts(appliance_daemon):\n"
        "    d = appliance_daemon()\n"
        "    assert d.get('/health').json()['status'] == 'ok'\n"
        "    assert d.cli('status').returncode == 0\n")
    out = subprocess.run([PYTEST, "-q", "-p", "no:cacheprovider", "my_plugin"], cwd=work, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout


def test_a_triton_folder_in_the_daemons_directory_is_not_seen_by_job_children(tmp_path):
    """`appliance models export NAME --triton triton` leaves a `triton/` folder where the user stands; torch in a
    training child took it for the Triton compiler and every training job failed."""
    work = tmp_path / "work"
    (work / "triton" / "fraud" / "1").mkdir(parents=True)
    (work / "triton" / "fraud" / "config.pbtxt").write_text('name: "fraud"\n')
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], '[fixture_jobs]\nnote = "from the project"\n')
    with DaemonProcess(tmp_path / "home", project, cwd=work) as d:
        job = d.wait_job(d.submit("child_finds", {"module": "triton"})["id"])
        assert job["state"] == "succeeded", job
        seen = [job["result"]["origin"] or "", *job["result"]["locations"]]
        assert not any(str(work) in place for place in seen), job["result"]
        assert job["result"]["settings"] == {"note": "from the project"}  # job.settings: the plugin's own table
