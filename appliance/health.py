"""The box's health: what is damaged or failing right now, said the way a person can act on it.

``Health`` holds the problems the daemon found (a damaged ``catalog.db`` or ``store.duckdb``) and asks its
live sources (the job runner's unrecorded ends) on every look; ``/api/v1/health`` and ``appliance status``
show it. The errors here are what a request gets when the disk, the descriptors or a store fail under it: a
503 (507 for a full disk) that names the problem and the remedy, never a 500 or a 400 blaming the client.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ApplianceError

#: Worst last: a box with a damaged store is "damaged" whatever else is only degraded.
LEVELS = ("ok", "degraded", "damaged")

#: The names the backup plugin gives the home's own backups (``backups/20250101T020000Z``).
_BACKUP_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


class StorageError(ApplianceError):
    """A store cannot be used right now (the request was fine); the message says why and what to do."""

    status = 503
    default_title = "Storage unavailable"


class DiskFull(StorageError):
    status = 507
    default_title = "Disk full"


class OutOfDescriptors(StorageError):
    default_title = "Out of file descriptors"


class Damaged(StorageError):
    default_title = "Store damaged"


@dataclass
class Problem:
    part: str
    level: str
    problem: str
    remedy: str


class Health:
    """The problems of the box now: those reported (kept until the daemon stops) and those its sources report
    live."""

    def __init__(self, home=None) -> None:
        self.home = home
        self._found: dict[str, Problem] = {}
        self._sources: list[Callable[[], list[Problem]]] = []
        self._lock = threading.Lock()

    def report(self, part: str, level: str, problem: str, remedy: str) -> None:
        """Record a problem with ``part`` (``catalog.db``, ``store.duckdb``); a later report replaces it."""
        with self._lock:
            self._found[part] = Problem(part, level, problem, remedy)

    def watch(self, source: Callable[[], list[Problem]]) -> None:
        """Ask ``source`` for its problems on every look (it must be quick and must not raise)."""
        self._sources.append(source)

    def summary(self) -> dict:
        """``{"status": "ok" | "degraded" | "damaged", "problems": [{part, level, problem, remedy}]}``."""
        with self._lock:
            problems = list(self._found.values())
        for source in self._sources:
            problems += source()
        status = max((p.level for p in problems), key=LEVELS.index, default="ok")
        return {"status": status, "problems": [asdict(p) for p in problems]}

    def damaged(self, part: str, detail: str) -> Damaged:
        """``part`` (``catalog.db``, ``store.duckdb``) is damaged: reported, and the 503 a request gets for it."""
        remedy = self.restore_remedy()
        self.report(part, "damaged", f"{part} is damaged: {detail}", remedy)
        return Damaged(f"{part} is damaged ({detail}); the daemon cannot trust what it reads there. To repair "
                       f"it, {remedy}")

    def restore_remedy(self) -> str:
        """How to get a damaged home back: restore its newest backup (by name) into a new home."""
        backups = Path(self.home.backups_dir) if self.home else None
        try:
            names = sorted(p.name for p in backups.iterdir() if _BACKUP_NAME.match(p.name)) if backups else []
        except OSError:
            names = []
        backup = str(backups / names[-1]) if names else "BACKUP_DIR"
        return (f"restore a backup: appliance restore {backup} --home NEW_HOME, then start the daemon with "
                f"`appliance --home NEW_HOME up`")


#: Below this, a disk is full for the stores: SQLite and DuckDB write whole pages and blocks (256 KiB).
FULL_BELOW = 1 << 20


def disk_is_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < FULL_BELOW


def disk_watch(path: Path) -> Callable[[], list[Problem]]:
    """A ``Health`` source: the disk holding ``path`` is full."""
    def look() -> list[Problem]:
        if not disk_is_full(path):
            return []
        return [Problem("disk", "degraded", f"{full_at(path)}: the stores cannot grow",
                        "free some space on that disk (`appliance disk` shows what the home holds)")]
    return look


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def full_at(path: Path) -> str:
    free = free_bytes(path)
    return f"disk full at {path} ({'unknown' if free is None else free} bytes free)"


def disk_full(path: Path, what: str, then: str = "and try again") -> DiskFull:
    return DiskFull(f"{full_at(path)}: {what}. Free some space on that disk {then}")


def out_of_descriptors(what: str) -> OutOfDescriptors:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return OutOfDescriptors(f"the daemon has no file descriptors left (its limit is {soft}): {what}. Close "
                            "idle connections to it, or raise its limit (ulimit -n, LimitNOFILE= in systemd)")


def descriptors_exhausted() -> bool:
    """True when this process cannot open one more file (what SQLite's "unable to open" hides)."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return False


def explain_os_error(exc: OSError, path: Path, what: str) -> ApplianceError | None:
    """The error a person should see for ``exc`` met while doing ``what`` on ``path``; None for others."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path, what)
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return out_of_descriptors(what)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{what}: {exc.strerror} at {exc.filename or path}", title="Permission denied")
    if exc.errno == errno.EIO:
        return StorageError(f"{what}: input/output error at {exc.filename or path} (is the disk failing?)")
    return None
