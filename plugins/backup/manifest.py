"""A backup's manifest (``manifest.json``): the sha256 and size of every file, and every table's row count.

This module runs anywhere: in the daemon when a backup is written, and in the user's shell for ``backup
verify`` and ``restore``, which need no daemon.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from appliance import ApplianceError

NAME = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


class BadBackup(ApplianceError):
    default_title = "Backup failed verification"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _readable_sha256(path: Path) -> str | None:
    try:
        return sha256(path)
    except OSError:
        return None


def files_under(root: Path) -> list[str]:
    """Every file below ``root`` as a POSIX path relative to it, the manifest itself excepted."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != NAME:
                out.append(rel)
    return sorted(out)


def catalog_counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name")]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


def hash_files(root: Path) -> dict[str, dict]:
    """The sha256 and size of every file below ``root`` (the manifest excepted), keyed by relative path."""
    return {rel: {"sha256": sha256(root / rel), "size": (root / rel).stat().st_size} for rel in files_under(root)}


def write(root: Path, files: dict[str, dict], *, app: str, job_id: int | None, tables: dict) -> dict:
    """Write the manifest of ``files`` (from ``hash_files``), fsynced, under its final name last."""
    data = {"format": FORMAT, "created": time.time(), "appliance": app, "job_id": job_id,
            "bytes": sum(f["size"] for f in files.values()), "tables": tables, "files": files}
    tmp = root / (NAME + ".tmp")
    with open(tmp, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / NAME)
    return data


def read(root: Path) -> dict:
    path = Path(root) / NAME
    if not Path(root).is_dir():
        raise BadBackup(f"{root} is not a directory", title="Not a backup")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadBackup(f"{root} has no {NAME}; it is not a backup, or one that was never finished",
                        title="Not a backup") from None
    except ValueError as exc:
        raise BadBackup(f"{path} is not valid JSON ({exc}); the backup cannot be trusted") from None
    except OSError as exc:
        raise BadBackup(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict) \
            or not isinstance(data.get("tables"), dict) or not isinstance(data.get("bytes"), int):
        raise BadBackup(f"{path} is not a manifest this appliance understands (format {FORMAT})")
    return data


def check(root: Path) -> tuple[dict, list[dict]]:
    """Re-hash every file against the manifest: the manifest, and every file that failed as ``{"path",
    "sha256" (what the manifest recorded, or None), "reason"}``. Raises ``BadBackup`` only when there is no
    manifest to check against."""
    root = Path(root)
    data = read(root)
    problems = []

    def bad(rel: str, reason: str) -> None:
        want = data["files"].get(rel)
        problems.append({"path": rel, "sha256": want.get("sha256") if isinstance(want, dict) else None,
                         "reason": reason})

    for rel, want in sorted(data["files"].items()):
        path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            bad(rel, "a path outside the backup")
        elif not path.is_file():
            bad(rel, "missing")
        elif (got := _readable_sha256(path)) is None:
            bad(rel, "cannot be read")
        elif not isinstance(want, dict) or got != want.get("sha256"):
            bad(rel, f"content hashes to {got}, which does not match the manifest")
        elif rel.startswith("artifacts/") and Path(rel).name != got:
            # An artifact is named by its hash, which catches a manifest edited to match a changed file.
            bad(rel, f"content hashes to {got}, which does not match its name")
    for rel in files_under(root):
        if rel not in data["files"]:
            bad(rel, "not in the manifest")
    return data, problems


def describe(problem: dict) -> str:
    """One line per bad file: its path, the hash the manifest recorded for it, and what is wrong."""
    recorded = f" (recorded sha256 {problem['sha256']})" if problem["sha256"] else ""
    return f"{problem['path']}{recorded}: {problem['reason']}"
