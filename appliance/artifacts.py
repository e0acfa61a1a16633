"""The content-addressed artifact store: files named by their sha256, written atomically, verified on read.

A write goes to a temporary file in the same directory, is fsynced, then renamed into place, so a crash never
leaves a half-written artifact under a real name. A read re-hashes the file and refuses one that changed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from .errors import ApplianceError, BadRequest, NotFound

_HASH = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# Artifacts are named by their hash, so a good copy from any backup that verifies can simply be put back.
_FROM_BACKUP = ("copy it back from a backup that verifies (`appliance backup verify DIR`, then DIR/{rel} "
                "to the home's {rel})")


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

    def _rel(self, digest: str) -> str:
        return f"artifacts/{digest[:2]}/{digest}"

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
        with open(src, "rb") as f, self.create() as out:
            shutil.copyfileobj(f, out, _CHUNK)
            return out.commit()

    def create(self) -> NewArtifact:
        """A new artifact written as a stream (``with store.create() as out: ...; digest = out.commit()``)."""
        return NewArtifact(self)

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
                                  + _FROM_BACKUP.format(rel=self._rel(digest)))
        return path

    def get_bytes(self, digest: str) -> bytes:
        data = self.path_for(digest).read_bytes() if self.exists(digest) else None
        if data is None:
            raise NotFound(f"no artifact {digest}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptArtifact(f"artifact {digest} does not match its hash; "
                                  + _FROM_BACKUP.format(rel=self._rel(digest)))
        return data


class NewArtifact:
    """A file being written into the store, named by its sha256 when committed.

    Bytes are hashed and written on a helper thread as they arrive (hashlib and file writes let go of the GIL),
    so hashing a large artifact overlaps the work of making it instead of re-reading the file afterwards.
    Without ``commit`` (an error, a cancelled job) the temporary file is removed.
    """

    _BUFFER = 1 << 20  # small writes (a Parquet page header) are gathered before they cross threads

    def __init__(self, store: ArtifactStore):
        self._store = store
        fd, self._tmp = tempfile.mkstemp(dir=store.root, prefix=".tmp-")
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._chunks: queue.Queue = queue.Queue(maxsize=16)  # bounds memory when the disk is slower
        self._error: BaseException | None = None
        self._done = False
        self._worker = threading.Thread(target=self._drain, name="artifact-writer", daemon=True)
        self._worker.start()

    def write(self, data) -> int:
        if self._error is not None:
            raise self._error
        if not self._buf and len(data) >= self._BUFFER:
            self._chunks.put(bytes(data))  # a big write goes as it is (bytes of bytes is no copy)
            return len(data)
        self._buf += data
        if len(self._buf) >= self._BUFFER:
            self._chunks.put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    # The file-object surface a Parquet writer checks for.
    closed = False

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def _drain(self) -> None:
        written = 0
        while (chunk := self._chunks.get()) is not None:
            if self._error is None:
                try:
                    self._hash.update(chunk)
                    self._file.write(chunk)
                    # The disk starts on these bytes now, so the fsync at commit has little left to wait for.
                    _start_writeback(self._file.fileno(), written, len(chunk))
                    written += len(chunk)
                except BaseException as exc:  # raised to the writer at its next write or at commit
                    self._error = exc

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            if self._buf and self._error is None:
                self._chunks.put(bytes(self._buf))
                self._buf.clear()
            self._chunks.put(None)
            self._worker.join()

    def commit(self) -> str:
        """Flush, fsync and rename into place; returns the sha256 that names the artifact."""
        self._finish()
        try:
            if self._error is not None:
                raise self._error
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            digest = self._hash.hexdigest()
            dest = self._store.path_for(digest)
            if dest.is_file():  # the same bytes are already in: a fresh write for retention's clock
                os.utime(dest)
                os.unlink(self._tmp)
                return digest
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, dest)
            fsync_path(dest.parent)
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._finish()
        self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> NewArtifact:
        return self

    def __exit__(self, *exc) -> None:
        if os.path.exists(self._tmp):  # not committed
            self.abort()


def _writeback_call():
    """Linux's sync_file_range(2), which starts writing a file's range to disk without waiting; None elsewhere."""
    try:
        import ctypes
        import ctypes.util

        call = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


_SYNC_FILE_RANGE = _writeback_call() if sys.platform.startswith("linux") else None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure only leaves it to fsync


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
