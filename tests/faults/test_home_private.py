"""The home is private: 0700 directories and 0600 files, for a new home, for one an older daemon or the demo
left open to everyone, and for everything the daemon writes into it; a link in it is never followed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.testing import DaemonProcess


def _open_to_others(home: Path) -> list[str]:
    """Every path below ``home`` (itself included) that group or others may use; links are not followed."""
    found = []
    for path in [home, *home.rglob("*")]:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            found.append(f"{path.relative_to(home.parent)} {stat.filemode(st.st_mode)}")
    return found


def test_a_new_home_and_what_the_daemon_writes_in_it_are_private(tmp_path):
    with DaemonProcess(tmp_path / "home") as d:
        job = d.submit("backup")  # writes backups/, a copy of the catalog, the store's Parquet export
        assert d.wait_job(job["id"], timeout=60)["state"] == "succeeded"
        assert _open_to_others(tmp_path / "home") == []


def test_an_open_home_is_made_private_at_start_without_following_links(tmp_path):
    home = tmp_path / "home"
    with DaemonProcess(home):
        pass
    # As an older daemon, or `appliance demo` (its project and log inside the home), left it: open to all.
    (home / "project" / "data").mkdir(parents=True)
    (home / "project" / "appliance.toml").write_text("")
    (home / "project" / "data" / "rows.csv").write_text("a\n1\n")
    (home / "demo-daemon.log").write_text("")
    for path in [home, *home.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    outside = tmp_path / "shared.txt"
    outside.write_text("not the daemon's")
    os.chmod(outside, 0o644)
    (home / "plugins" / "link.txt").symlink_to(outside)
    assert len(_open_to_others(home)) > 10
    with DaemonProcess(home):
        assert _open_to_others(home) == []
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o644  # the link's target is not the daemon's


def test_a_home_this_user_cannot_make_private_is_refused():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root, to run the daemon as another user")
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's own tmp dirs are closed to other users
        shared = Path(top) / "shared"
        (shared / "home").mkdir(parents=True)
        (shared / "home" / "catalog.db").write_text("")
        for path, mode in ((Path(top), 0o755), (shared, 0o777), (shared / "home", 0o777),
                           (shared / "home" / "catalog.db", 0o644)):
            os.chmod(path, mode)
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                              "-m", "appliance", "--home", str(shared / "home"), "up", "--port", "0"],
                             capture_output=True, text=True, timeout=60, cwd="/")
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "error: Home not private:" in out.stderr and "(drwxrwxrwx, owner uid 0)" in out.stderr
        assert sorted(p.name for p in (shared / "home").iterdir()) == ["catalog.db"]  # refused before writing
