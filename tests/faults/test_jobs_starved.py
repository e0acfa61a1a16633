"""The job runner under the real failures: a daemon out of descriptors, a home on a full disk.

A job that fails while the catalog cannot take its failure is recorded once the catalog can, and the worker it
ran on runs the next job; a job submitted to a full disk is refused with the disk, the path and the bytes free.
"""

from __future__ import annotations

import time

from conftest import make_project

from appliance.testing import DaemonProcess
from faults.harness import LimitedDaemon, fill_disk, idle_connections, open_fds, small_disk

NOFILE = 160


def _project(tmp_path):
    return make_project(tmp_path / "project", ["good/fixture_jobs", "good/fixture_fault_jobs"],
                        "[daemon]\nworkers = 1\n")


def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def test_a_job_failing_while_the_daemon_has_no_descriptors_left_is_recorded_and_the_next_runs(tmp_path):
    marker = tmp_path / "fail-now"
    with LimitedDaemon(tmp_path / "home", _project(tmp_path), nofile=NOFILE) as d:
        bad = d.submit("fail_when", {"marker": str(marker)})
        d.wait_job(bad["id"], states=("running",))
        with idle_connections("127.0.0.1", d.info["port"], NOFILE + 50):
            assert _until(lambda: open_fds(d.proc.pid) >= NOFILE - 1)  # every descriptor it may have is taken
            marker.touch()  # fails now: its thread cannot even open the catalog to log the traceback
            time.sleep(1)
        failed = d.wait_job(bad["id"], timeout=10)
        assert failed["state"] == "failed" and failed["error"] == "RuntimeError: failed on purpose"
        after = d.submit("sleep", {"seconds": 0.05})
        assert d.wait_job(after["id"], timeout=10)["state"] == "succeeded"  # its worker was not lost


def test_a_job_failing_on_a_full_disk_is_recorded_once_there_is_room(tmp_path):
    marker = tmp_path / "fail-now"
    with small_disk(tmp_path / "disk", mb=64) as disk, DaemonProcess(disk / "home", _project(tmp_path)) as d:
        bad = d.submit("fail_when", {"marker": str(marker)})
        d.wait_job(bad["id"], states=("running",))
        filler = fill_disk(disk, leave=0)
        marker.touch()
        assert _until(lambda: d.get(f"/jobs/{bad['id']}").json()["state"] == "failed")
        assert "not recorded yet" in d.get(f"/jobs/{bad['id']}").json()["message"]
        health = d.get("/health").json()
        assert health["status"] == "degraded" and {p["part"] for p in health["problems"]} == {"disk", "jobs"}
        refused = d.post("/jobs", {"kind": "sleep", "params": {"seconds": 0.05}})
        assert refused.status_code == 507
        message = refused.json()["error"]["message"]
        assert f"disk full at {disk / 'home'} (" in message and " bytes free)" in message
        filler.unlink()
        assert _until(lambda: d.get("/health").json()["status"] == "ok")
        assert d.get(f"/jobs/{bad['id']}").json()["message"] == ""  # recorded: no note left
        after = d.submit("sleep", {"seconds": 0.05})
        assert d.wait_job(after["id"], timeout=10)["state"] == "succeeded"


def test_the_daemon_takes_its_soft_descriptor_limit_up_to_the_hard_one(tmp_path):
    """A soft limit of 256 under a hard one of 4096 (the usual 1024/524288 in small): the daemon asks for the
    hard limit at start, so the serving port's connection cap is not cut to a few hundred for nothing."""
    d = DaemonProcess(tmp_path / "home")
    d.command = lambda: ["prlimit", "--nofile=256:4096", "--"] + DaemonProcess.command(d)
    with d:
        limits = open(f"/proc/{d.proc.pid}/limits").read()
        [line] = [x for x in limits.splitlines() if x.startswith("Max open files")]
        assert line.split()[3:5] == ["4096", "4096"], line
