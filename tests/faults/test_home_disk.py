"""The home on a full disk: `up` says so, a job submission says so, `down` says so and still closes the stores.

Each message names the problem the way a person can act on it: the disk full at the home's path, and the
bytes left; none is a traceback or an opaque 500.
"""

from __future__ import annotations

import subprocess
import sys

from appliance.testing import DaemonProcess
from faults.harness import fill_disk, small_disk


def _up(home, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "--home", str(home), "up", "--port", "0"],
                          capture_output=True, text=True, timeout=timeout)


def _says_disk_full(text: str, home) -> bool:
    return f"disk full at {home}" in text and " bytes free" in text and "Traceback" not in text


def test_up_on_a_full_disk_says_so_without_a_traceback(tmp_path):
    with small_disk(tmp_path / "disk", mb=32) as disk:
        used = DaemonProcess(disk / "used").start()  # a home that has run: catalog, store and logs exist
        assert used.stop() == 0
        fill_disk(disk, leave=0)
        for home in (disk / "used", disk / "fresh"):
            out = _up(home)
            assert out.returncode == 1, out.stderr[-2000:]
            assert _says_disk_full(out.stderr, home), out.stderr[-2000:]


def test_down_on_a_full_disk_closes_the_stores_and_says_why(tmp_path):
    with small_disk(tmp_path / "disk", mb=64) as disk:
        d = DaemonProcess(disk / "home")
        d.stderr_path = tmp_path / "daemon-stderr.log"  # off the full disk, to read what it said
        d.start()
        filler = fill_disk(disk, leave=0)
        refused = d.post("/jobs", {"kind": "backup"})
        assert refused.status_code == 507 and _says_disk_full(refused.json()["error"]["message"], disk / "home")
        down = d.cli("down")
        assert down.returncode == 0 and "stopped daemon" in down.stdout
        assert _says_disk_full(down.stderr, disk / "home"), down.stderr
        assert d.proc.wait(10) == 0
        said = d.stderr()
        assert "Traceback" not in said and said.rstrip().endswith("stopped")  # the last step, after the stores
        filler.unlink()
        with d:  # what the stores held is there after the restart
            assert d.get("/health").json()["status"] == "ok"


def test_a_route_that_writes_on_a_full_disk_says_so_instead_of_a_500(tmp_path):
    """A model upload (any route writing a file) on a full disk: a 507 naming the disk, no plugin failure."""
    from serving_models import linear_model

    model = linear_model(tmp_path / "m.onnx", seed=1, n_features=200_000)  # 800 kB: more than the disk has left
    with small_disk(tmp_path / "disk", mb=64) as disk:
        d = DaemonProcess(disk / "home")
        d.stderr_path = tmp_path / "daemon-stderr.log"
        with d:
            filler = fill_disk(disk, leave=64 * 1024)
            r = d.http.post("/api/v1/models/wide/versions", content=model.read_bytes())
            assert r.status_code == 507, r.text
            assert _says_disk_full(r.json()["error"]["message"], disk / "home"), r.text
            assert d.get("/status").json()["plugins"]["failures"] == 0  # the box's state, not a plugin's bug
            filler.unlink()
            assert d.register_model("wide", model)["version"] == 1
