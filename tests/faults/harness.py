"""The fault harness: real faults for a real daemon, so what bad luck and attackers do stays fixed.

- ``small_disk``: a small tmpfs (the test may mount as root), filled on demand with ``fill_disk``; skipped with
  the reason where mounting is refused.
- ``LimitedDaemon``: a daemon started with a low ``RLIMIT_NOFILE`` (and optionally an address-space limit).
- ``faults_env``: the environment that trips named fault points (``appliance/faults.py``): SIGKILL at a point,
  or an OSError (ENOSPC, EMFILE) raised there.
- ``corrupt``: overwrite bytes inside a file (a page of ``catalog.db`` or a block of ``store.duckdb``).
- ``idle_connections`` / ``slow_request``: clients that hold sockets open, or send a request a byte at a time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing import DaemonProcess

ENOSPC, EMFILE = errno.ENOSPC, errno.EMFILE


# ------------------------------------------------------------------------------------------------ disks


@contextlib.contextmanager
def small_disk(path: Path, mb: int = 64) -> Iterator[Path]:
    """A tmpfs of ``mb`` MiB mounted at ``path`` for the block; unmounted after (lazily, if still busy)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a small disk needs root to mount a tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_disk(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem holding ``directory`` until at most ``leave`` bytes are free; returns the filler
    file (delete it to give the space back)."""
    filler = Path(directory) / ".filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "ab") as f:
        while True:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
                f.flush()
            except OSError as exc:
                if exc.errno != ENOSPC:
                    raise
                break
    return filler


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


# ------------------------------------------------------------------------------------------------ daemons


def faults_env(*points: str) -> dict:
    """Environment tripping the named fault points, e.g. ``faults_env("job.finish=oserror:28")``."""
    return {"APPLIANCE_FAULTS": ",".join(points)}


class LimitedDaemon(DaemonProcess):
    """A daemon under resource limits: ``nofile`` open descriptors, ``address_space`` bytes of memory."""

    def __init__(self, *args, nofile: int | None = None, address_space: int | None = None, **kw):
        super().__init__(*args, **kw)
        self.nofile, self.address_space = nofile, address_space

    def command(self) -> list[str]:
        limits = []
        if self.nofile:
            limits.append(f"--nofile={self.nofile}:{self.nofile}")
        if self.address_space:
            limits.append(f"--as={self.address_space}:{self.address_space}")
        return (["prlimit", *limits, "--"] if limits else []) + super().command()


def serving_address(d: DaemonProcess) -> tuple[str, int]:
    """The (host, port) of a running daemon's serving port."""
    return "127.0.0.1", int(d.info["ports"]["serving"])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------------ files


def corrupt(path: Path, offset: int, data: bytes = b"\xde\xad\xbe\xef" * 64) -> None:
    """Overwrite ``data`` at ``offset`` inside ``path`` (negative: from the end), in place, as a bad disk would."""
    path = Path(path)
    size = path.stat().st_size
    at = offset if offset >= 0 else size + offset
    with open(path, "r+b") as f:
        f.seek(max(0, min(at, size - len(data))))
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------------ clients


@contextlib.contextmanager
def idle_connections(host: str, port: int, n: int, payload: bytes = b"") -> Iterator[list[socket.socket]]:
    """Hold up to ``n`` connections open (each having sent ``payload``); the list holds those that opened."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect((host, port))
                if payload:
                    s.sendall(payload)
            except OSError:
                s.close()
                break
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def slow_request(host: str, port: int, request: bytes, *, delay: float = 0.5, timeout: float = 30.0) -> bytes:
    """Send ``request`` one byte every ``delay`` seconds; returns what the server answered (b"" if it closed
    without a word) once it answers or closes."""
    s = socket.create_connection((host, port), timeout=timeout)
    got = b""
    try:
        for i in range(len(request)):
            try:
                s.sendall(request[i:i + 1])
            except OSError:
                break
            s.settimeout(delay)
            try:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk
                break
            except TimeoutError:
                continue
        s.settimeout(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()
