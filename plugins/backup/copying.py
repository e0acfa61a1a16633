"""Copies that share nothing writable with their source, and the private modes a backup and a home get.

A hard link would make the live file and every backup one inode, so one bad write would damage them all.
``copy_file`` makes a reflink where the filesystem has copy-on-write (btrfs, XFS): the copy
shares the source's blocks, costing no space, until either side is written, when the writer gets blocks of its
own; elsewhere (ext4, tmpfs, another filesystem) it copies the bytes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

#: ``ioctl(dest, FICLONE, src)`` from linux/fs.h (``_IOW(0x94, 9, int)``).
FICLONE = 0x40049409
#: What a filesystem or kernel without reflinks answers: not supported, not the same filesystem, not this ioctl.
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}
_CHUNK = 1 << 20


def copy_file(src: Path, dest: Path) -> bool:
    """Copy ``src`` to the new file ``dest`` (mode 0600); True when it was a reflink, False for a byte copy."""
    with open(src, "rb") as fin:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fout:
            if _reflink(fin.fileno(), fout.fileno()):
                return True
            shutil.copyfileobj(fin, fout, _CHUNK)
    return False


def _reflink(src_fd: int, dest_fd: int) -> bool:
    try:
        fcntl.ioctl(dest_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NO_REFLINK:
            return False
        raise
    return True


def seal(root: Path) -> None:
    """Make everything below ``root`` (and ``root``) private, 0700 directories and 0600 files, and durable:
    each file and directory is fsynced, so a backup whose manifest is on disk has all its bytes there too."""
    for dirpath, _dirs, names in os.walk(root, topdown=False):
        for name in names:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o600)
            _fsync(path, os.O_RDONLY)
        os.chmod(dirpath, 0o700)
        fsync_dir(dirpath)


def fsync_dir(path: Path | str) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path | str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
