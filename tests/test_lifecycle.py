"""The daemon's life: one per home, graceful SIGTERM, recovery after kill -9, bad config and stale files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import make_project

from appliance.testing import DaemonProcess


def run_cli(home, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "appliance", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=timeout)


def test_second_daemon_on_the_same_home_refuses_naming_the_first(tmp_path):
    with DaemonProcess(tmp_path / "home") as first:
        out = run_cli(tmp_path / "home", "up", "--port", "0", timeout=30)
        assert out.returncode != 0
        assert f"another daemon (pid {first.proc.pid})" in out.stderr
        assert "Traceback" not in out.stderr
        assert first.get("/health").status_code == 200


def test_sigterm_exits_zero_within_deadline_and_drains_a_running_job(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], "[daemon]\ndrain_seconds = 10\n")
    d = DaemonProcess(tmp_path / "home", project).start()
    job = d.submit("sleep", {"seconds": 1.0})
    d.wait_job(job["id"], states=("running",))
    start = time.monotonic()
    assert d.stop(timeout=15) == 0
    assert time.monotonic() - start < 10
    assert not (tmp_path / "home" / "daemon.json").exists()
    d.start()
    assert d.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"  # drained, not cut off
    assert d.stop() == 0


def test_sigterm_interrupts_a_job_past_the_drain_time_and_it_runs_again_next_start(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"], "[daemon]\ndrain_seconds = 0.5\n")
    d = DaemonProcess(tmp_path / "home", project).start()
    job = d.submit("sleep", {"seconds": 30})
    d.wait_job(job["id"], states=("running",))
    start = time.monotonic()
    assert d.stop(timeout=20) == 0
    assert time.monotonic() - start < 8
    d.start()
    assert d.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running")
    d.post(f"/jobs/{job['id']}/cancel")
    assert d.stop() == 0


def test_kill_9_during_a_job_then_restart_fails_it_and_retries_per_policy(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"])
    marker = tmp_path / "marker"
    d = DaemonProcess(tmp_path / "home", project).start()
    job = d.submit("hang_first", {"marker": str(marker)})
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.get(f"/jobs/{job['id']}").json()["state"] == "running"
    d.kill()
    d.start()
    done = d.wait_job(job["id"])
    assert done["state"] == "succeeded"
    assert done["attempt"] == 2 and done["result"] == {"attempt": 2}
    [failed] = [e for e in d.events(type="job.failed") if e["data"]["job_id"] == job["id"]]
    assert "daemon stopped while this job was running" in failed["data"]["error"]
    assert failed["data"]["will_retry"] is True
    assert d.stop() == 0


def test_kill_9_fails_a_job_with_no_retries_left(tmp_path):
    project = make_project(tmp_path / "p", ["good/fixture_jobs"])
    d = DaemonProcess(tmp_path / "home", project).start()
    job = d.submit("sleep", {"seconds": 60})
    d.wait_job(job["id"], states=("running",))
    d.kill()
    d.start()
    after = d.get(f"/jobs/{job['id']}").json()
    assert after["state"] == "failed"
    assert "daemon stopped while this job was running" in after["error"]
    assert d.stop() == 0


def test_stale_lock_and_daemon_json_from_a_dead_pid_are_recovered_with_a_message(tmp_path):
    home = tmp_path / "home"
    d = DaemonProcess(home).start()
    d.kill()  # leaves daemon.json and the lock file naming a dead pid
    dead = d.proc.pid
    assert json.loads((home / "daemon.json").read_text())["pid"] == dead
    out = run_cli(home, "status")
    assert out.returncode == 3
    assert f"left over from pid {dead}" in out.stderr and "appliance up" in out.stderr
    d.start()
    assert f"recovered a stale lock left by pid {dead}" in d.stderr()
    assert d.stop() == 0


def test_corrupt_daemon_json_is_reported_and_replaced(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "daemon.json").write_text("{not json")
    out = run_cli(home, "status")
    assert out.returncode == 3
    assert "daemon.json is corrupt" in out.stderr and "Traceback" not in out.stderr
    with DaemonProcess(home) as d:
        assert "replacing daemon.json" in d.stderr()
        assert run_cli(home, "status").returncode == 0


def test_commands_without_a_daemon_say_how_to_start_one(tmp_path):
    for args in (("status",), ("plugins", "--json"), ("jobs",), ("events",), ("down",)):
        out = run_cli(tmp_path / "nohome", *args)
        assert out.returncode == 3, args
        assert "no daemon is running" in out.stderr and "appliance up" in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize("toml, expected", [
    ('[daemon]\nport = "abc"\n', "appliance.toml:2: daemon.port: expected int, got str 'abc'"),
    ('[daemon]\nhost = "127.0.0.1"\nworkrs = 3\n', "appliance.toml:3: daemon.workrs: unknown key; did you mean 'workers'?"),
    ('[daemon]\nport = 1\n[daemon\n', "appliance.toml:3: "),
    ('[plugins]\nallow = "x"\n', "appliance.toml:2: plugins.allow: expected list"),
    ('[daemon]\nport = 99999\n', "appliance.toml:2: daemon.port: expected a port between 0 and 65535"),
])
def test_malformed_config_names_file_line_and_key(tmp_path, toml, expected):
    (tmp_path / "appliance.toml").write_text(toml)
    out = run_cli(tmp_path / "home", "up", "--project", str(tmp_path), "--port", "0", timeout=30)
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_down_stops_the_daemon(tmp_path):
    d = DaemonProcess(tmp_path / "home").start()
    out = run_cli(tmp_path / "home", "down")
    assert out.returncode == 0, out.stderr
    assert d.proc.wait(10) == 0


def test_init_creates_a_project_the_daemon_accepts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance", "init", str(tmp_path / "proj")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "proj" / "appliance.toml").is_file()
    with DaemonProcess(tmp_path / "home", tmp_path / "proj") as d:
        assert d.get("/status").json()["project"] == str((tmp_path / "proj").resolve())
    again = subprocess.run([sys.executable, "-m", "appliance", "init", str(tmp_path / "proj")], capture_output=True,
                           text=True, timeout=30)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_home_and_log_layout(tmp_path):
    with DaemonProcess(tmp_path / "home") as d:
        home = tmp_path / "home"
        for name in ("catalog.db", "store.duckdb", "artifacts", "plugins", "logs", "backups", "token", "lock"):
            assert (home / name).exists(), name
        info = json.loads((home / "daemon.json").read_text())
        assert info["pid"] == d.proc.pid and info["ports"]["control"] == info["port"]
        assert "ready on" in (home / "logs" / "daemon.log").read_text()
    assert os.stat(home).st_mode & 0o077 == 0
