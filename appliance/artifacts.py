"""The content-addressed artifact store: files named by their sha256, written atomically, verified on read.

A write goes to a temporary file in the same directory, is fsynced, then renamed into place, so a crash never
leaves a half-written artifact under a real name. A read re-hashes the file and refuses one that changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import ApplianceError, BadRequest, NotFound

_HASH = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class CorruptArtifact(ApplianceError):
    status = 500
    default_title = "Corrupt artifact"


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        if not _HASH.match(digest or ""):
            raise BadRequest(f"not an artifact hash (64 lowercase hex digits): {digest!r}")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        try:
            # Putting it again counts as a fresh write: retention's age of an unreferenced artifact starts here,
            # so one that a new row is about to reference is never pruned in between.
            os.utime(self.path_for(digest))
        except FileNotFoundError:
            self._write(digest, [data])
        return digest

    def put_file(self, src: Path | str) -> str:
        """Copy a file in; returns its sha256. The source is hashed while it is copied."""
        src = Path(src)
        h = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            dest = self.path_for(digest)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
            fsync_path(dest.parent)
            return digest
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def move_file(self, src: Path | str) -> str:
        """Take in a file its maker is done with: hashed where it lies and renamed into place, not copied (a
        training-set snapshot is tens of MB). Falls back to a copy when ``src`` is on another filesystem."""
        src = Path(src)
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            os.fsync(f.fileno())
        digest = h.hexdigest()
        dest = self.path_for(digest)
        if dest.is_file():  # the same bytes are already in: a fresh write for retention's clock, as put_bytes
            os.utime(dest)
            src.unlink()
            return digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dest)
        except OSError:
            return self.put_file(src)
        fsync_path(dest.parent)
        return digest

    def _write(self, digest: str, chunks: list[bytes]) -> None:
        dest = self.path_for(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                for c in chunks:
                    out.write(c)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            fsync_path(dest.parent)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def verify(self, digest: str) -> Path:
        """The artifact's path after checking its content still hashes to its name."""
        path = self.path_for(digest)
        if not path.is_file():
            raise NotFound(f"no artifact {digest}")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise CorruptArtifact(f"artifact {digest} does not match its hash (found {h.hexdigest()}); "
                                  "restore it from a backup")
        return path

    def get_bytes(self, digest: str) -> bytes:
        data = self.path_for(digest).read_bytes() if self.exists(digest) else None
        if data is None:
            raise NotFound(f"no artifact {digest}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptArtifact(f"artifact {digest} does not match its hash; restore it from a backup")
        return data


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
