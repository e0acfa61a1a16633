"""The harness itself: named fault points trip as set, and the small disk fills."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from faults.harness import ENOSPC, faults_env, fill_disk, free_bytes, small_disk


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def test_a_named_point_kills_the_process_or_raises_the_errno():
    code = "from appliance.faults import fault_point\nfault_point('a')\nfault_point('b')\nprint('past')"
    assert _run(code, faults_env("b")).returncode == -9
    r = _run(code, faults_env(f"a=oserror:{ENOSPC}"))
    assert r.returncode == 1 and "No space left on device (fault point 'a')" in r.stderr
    assert _run(code, {}).stdout.strip() == "past"


def test_a_point_trips_from_its_nth_reach_on():
    code = ("from appliance.faults import fault_point\nfor i in range(4):\n"
            "    try:\n        fault_point('w')\n        print('ok', i)\n"
            "    except OSError:\n        print('fail', i)\n")
    out = _run(code, faults_env("w@3=oserror:28")).stdout.split("\n")
    assert out[:4] == ["ok 0", "ok 1", "fail 2", "fail 3"]


def test_small_disk_fills_and_frees(tmp_path):
    with small_disk(tmp_path / "disk", mb=8) as disk:
        filler = fill_disk(disk, leave=4096)
        assert free_bytes(disk) <= 4096
        with pytest.raises(OSError) as err:
            (disk / "more").write_bytes(b"x" * 65536)
        assert err.value.errno == ENOSPC
        filler.unlink()
        assert free_bytes(disk) > 7 << 20
