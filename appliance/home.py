"""The home: the one directory a daemon owns (catalog, store, artifacts, logs, token, lock, daemon.json)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ApplianceError, DaemonNotRunning


def default_home() -> Path:
    if env := os.environ.get("APPLIANCE_HOME"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "appliance"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not a running daemon.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class HomeLocked(ApplianceError):
    default_title = "Home in use"


def _open(path: Path) -> bool:
    """Group or others may use ``path`` (a link is never looked through: its target is not the home's)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return not stat.S_ISLNK(st.st_mode) and bool(st.st_mode & 0o077)


def _tree(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):  # never into linked directories
        for name in dirnames + filenames:
            yield Path(dirpath, name)


def _make_private(path: Path, root: Path) -> None:
    if not _open(path):
        return
    st = os.lstat(path)
    try:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    except FileNotFoundError:
        pass
    except PermissionError:
        raise ApplianceError(
            f"the home {root} must be private to the daemon's user, but {path} ({stat.filemode(st.st_mode)}, "
            f"owner uid {st.st_uid}) is open to others and this user (uid {os.geteuid()}) cannot change that: "
            "chown the home to this user, or choose another --home", title="Home not private") from None


@dataclass
class Home:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root).expanduser().resolve()
        self._lock_fd: int | None = None

    catalog_path = property(lambda self: self.root / "catalog.db")
    store_path = property(lambda self: self.root / "store.duckdb")
    artifacts_dir = property(lambda self: self.root / "artifacts")
    plugins_dir = property(lambda self: self.root / "plugins")
    logs_dir = property(lambda self: self.root / "logs")
    backups_dir = property(lambda self: self.root / "backups")
    daemon_file = property(lambda self: self.root / "daemon.json")
    token_file = property(lambda self: self.root / "token")
    lock_file = property(lambda self: self.root / "lock")

    def ensure(self) -> None:
        """Create the home, or make an existing one private: the home 0700, its directories 0700, its files 0600,
        whoever created it. A home left open (by an older daemon, by ``appliance demo``) is made private all
        the way down, once; after that only its top level is looked at, each start."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if any(_open(p) for p in [self.root, *self.root.iterdir()]):
            for path in [self.root, *_tree(self.root)]:
                _make_private(path, self.root)
        for d in (self.artifacts_dir, self.plugins_dir, self.logs_dir, self.backups_dir):
            d.mkdir(exist_ok=True, mode=0o700)

    # -------------------------------------------------------------------------------------------- token

    def token(self, create: bool = False) -> str:
        """The control API's bearer token, created mode 0600 on the daemon's first start."""
        try:
            token = self.token_file.read_text().strip()
            if token:
                return token
        except FileNotFoundError:
            pass
        if not create:
            raise DaemonNotRunning(f"no token in {self.root}; start the daemon with `appliance up` first")
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.chmod(self.token_file, 0o600)
        return token

    # -------------------------------------------------------------------------------------------- lock

    def acquire_lock(self) -> str | None:
        """Hold the home's lock for this process. Returns a note when a stale lock was recovered.

        The lock is an ``flock``, released by the kernel when its holder dies, so a lock file left by a dead
        daemon never blocks a start; its recorded pid only lets us say so.
        """
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise HomeLocked(
                f"another daemon (pid {holder}) is running on home {self.root}; "
                f"stop it with `appliance down` or use another --home"
            ) from None
        previous = os.read(fd, 64).decode(errors="replace").strip()
        note = None
        if previous.isdigit() and int(previous) != os.getpid() and not pid_alive(int(previous)):
            note = f"recovered a stale lock left by pid {previous}, which is no longer running"
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._lock_fd = fd
        return note

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    # -------------------------------------------------------------------------------------------- daemon.json

    def write_daemon_info(self, info: dict) -> None:
        tmp = self.daemon_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.daemon_file)

    def read_daemon_info(self) -> dict:
        """What the running daemon wrote; a missing, corrupt or stale file says no daemon runs, and how to start one."""
        start = f"start one with `appliance up --home {self.root}`"
        try:
            text = self.daemon_file.read_text()
        except FileNotFoundError:
            raise DaemonNotRunning(f"no daemon is running on home {self.root}; {start}") from None
        try:
            info = json.loads(text)
            pid = int(info["pid"])
            info["url"]
        except (ValueError, KeyError, TypeError):
            raise DaemonNotRunning(
                f"{self.daemon_file} is corrupt (not the JSON a daemon writes); no daemon can be reached. "
                f"If none runs, {start}: it replaces the file"
            ) from None
        if not pid_alive(pid):
            raise DaemonNotRunning(
                f"no daemon is running on home {self.root} (daemon.json is left over from pid {pid}, which "
                f"has exited); {start}"
            )
        return info

    def clear_daemon_info(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.daemon_file.unlink()
