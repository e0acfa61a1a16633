"""Taking a backup in the daemon: a consistent snapshot of every store while jobs and serving keep running.

The catalog is copied with SQLite's online backup API (one read transaction, so a consistent copy), the store
is exported to Parquet inside one DuckDB transaction (writers carry on; the export sees the moment it began),
and artifacts, which are immutable files named by their hash, are copied (``copying``: a reflink where the
filesystem has copy-on-write, else the bytes), never hard-linked: a backup shares no inode with the live home,
so a bad write to one cannot damage the other. Backups share no files with each other either: ``keep`` of them
are that many independent chances, and sharing would save only the artifacts, as the store's export is
rewritten whole each time anyway. An artifact whose bytes no longer match its hash is left out and named in
the result. The order matters: the catalog first, then the store, then the artifacts, so whatever the catalog
copy references (a materialized feature table, an artifact by hash) was already written when the later parts
are taken; the later parts may hold a little more, never less. Everything lands in a hidden sibling directory
that is renamed into place only once its manifest is written, so a directory with a name and a manifest is
always a complete backup. A backup is private like the home (0700 directories, 0600 files) and fsynced.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from appliance import ApplianceError, BadRequest

from . import manifest
from .copying import copy_file, fsync_dir, seal

#: One backup at a time: two would compete for the disk and for the same destination directory.
_LOCK = threading.Lock()


#: The names the home's own backups get; only these are ever pruned, never a directory someone put there.
_STAMPED = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


def default_destination(backups_dir: Path) -> Path:
    # Attempts that died with their daemon left hidden partial directories; no other backup runs (the lock).
    for stale in backups_dir.glob(".*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = backups_dir / stamp, 1
    while dest.exists():
        n += 1
        dest = backups_dir / f"{stamp}-{n}"
    return dest


def check_destination(dest: Path, home) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadRequest(f"backup destination {dest} exists and is not an empty directory; "
                         "choose a new directory")
    resolved = dest.resolve()
    if home.root in resolved.parents and home.backups_dir not in resolved.parents:
        # Inside the home, a backup would back itself up (artifacts/) or be mistaken for state.
        raise BadRequest(f"backup destination {dest} is inside the home {home.root}; choose a directory "
                         f"outside it, or leave out --to to write under {home.backups_dir}")


def take(app, job, to: str | None = None) -> dict:
    """The ``backup`` job: snapshot the home into ``to`` (default ``backups/<UTC timestamp>/``)."""
    started = time.monotonic()
    with _LOCK:
        dest = Path(to).expanduser() if to else default_destination(app.home.backups_dir)
        if not dest.is_absolute():
            raise BadRequest(f"backup destination must be an absolute path, got {to!r}")
        partial = dest.parent / f".{dest.name}.partial"
        try:
            check_destination(dest, app.home)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # left by an attempt that died; this one starts over
            partial.mkdir(mode=0o700)
            job.progress(0.05, "copying the catalog")
            _copy_catalog(app.home.catalog_path, partial / "catalog.db")
            job.check_cancelled()
            job.progress(0.2, "exporting the store")
            store_counts = _export_store(app.store.cursor(), partial / "store")
            job.check_cancelled()
            job.progress(0.5, "copying artifacts")
            reflinked, copied = _copy_artifacts(app.home.artifacts_dir, partial / "artifacts", job)
            if app.home.plugins_dir.is_dir():
                shutil.copytree(app.home.plugins_dir, partial / "plugins",
                                ignore=shutil.ignore_patterns("__pycache__"))
            job.progress(0.7, "hashing")
            files = manifest.hash_files(partial)
            damaged = _drop_damaged_artifacts(partial, files)
            seal(partial)
            written = manifest.write(partial, files, app=app.version, job_id=job.id,
                                     tables={"catalog": manifest.catalog_counts(partial / "catalog.db"),
                                             "store": store_counts})
            fsync_dir(partial)
            if dest.exists():
                dest.rmdir()  # checked empty above; the rename needs the name free
            os.replace(partial, dest)
            fsync_dir(dest.parent)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise ApplianceError(f"could not write the backup to {dest}: {exc.strerror or exc}",
                                 title="Backup failed") from exc
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    job.log(f"backup written to {dest}: {len(written['files'])} files, {written['bytes']} bytes "
            f"({reflinked} artifacts reflinked, {copied} copied)")
    for digest in damaged:
        job.log(f"artifact {digest} in the home does not match its hash: left out of this backup; "
                "an older backup may hold it intact")
    return {"path": str(dest), "files": len(written["files"]), "bytes": written["bytes"],
            "artifacts": reflinked + copied - len(damaged), "reflinked": reflinked, "damaged_artifacts": damaged,
            "tables": written["tables"], "seconds": round(time.monotonic() - started, 3)}


def _copy_catalog(src: Path, dest: Path) -> None:
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        # A single self-contained file: verify hashes it and restore copies it, with no -wal beside it.
        target.execute("pragma journal_mode=delete").fetchall()
    finally:
        target.close()
        source.close()


def _export_store(cur, dest: Path) -> dict[str, int]:
    """Row counts and a Parquet export of every table, all read in one transaction."""
    import duckdb  # the daemon has it loaded already; the CLI, which imports this plugin too, need not

    cur.execute("begin transaction").fetchall()
    try:
        tables = cur.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() and not temporary and not internal "
            "order by schema_name, table_name").fetchall()
        counts = {}
        for schema, name in tables:
            q = f'"{schema.replace(chr(34), chr(34) * 2)}"."{name.replace(chr(34), chr(34) * 2)}"'
            counts[f"{schema}.{name}"] = cur.execute(f"select count(*) from {q}").fetchone()[0]
        path = str(dest).replace("'", "''")
        cur.execute(f"export database '{path}' (format parquet)").fetchall()
        cur.execute("commit").fetchall()
    except BaseException as exc:
        cur.execute("rollback").fetchall()
        if isinstance(exc, duckdb.Error):
            raise ApplianceError(f"the store could not be exported: {exc}", title="Backup failed") from None
        raise
    return counts


def _copy_artifacts(src: Path, dest: Path, job) -> tuple[int, int]:
    """Copy every artifact into ``dest``; returns how many were reflinked and how many copied byte for byte."""
    reflinked = copied = 0
    dest.mkdir()
    for sub in sorted(p for p in src.iterdir() if p.is_dir() and len(p.name) == 2) if src.is_dir() else []:
        for path in sorted(sub.iterdir()):
            if path.name.startswith(".tmp-"):
                continue  # a write in progress; it is not an artifact until it is renamed
            target = dest / sub.name / path.name
            target.parent.mkdir(exist_ok=True)
            try:
                if copy_file(path, target):
                    reflinked += 1
                else:
                    copied += 1
            except FileNotFoundError:
                continue  # pruned by retention since the listing: unreferenced, so not part of the snapshot
        job.check_cancelled()
    return reflinked, copied


def _drop_damaged_artifacts(root: Path, files: dict[str, dict]) -> list[str]:
    """Remove the copied artifacts whose content no longer hashes to their name (damaged in the home), from
    the backup and from ``files``; returns their names. Kept, they would make the whole backup fail verify."""
    damaged = [rel for rel, f in files.items() if rel.startswith("artifacts/") and Path(rel).name != f["sha256"]]
    for rel in damaged:
        (root / rel).unlink()
        del files[rel]
    return sorted(Path(rel).name for rel in damaged)


def prune(backups_dir: Path, keep: int) -> list[str]:
    """Delete the oldest complete backups in the home beyond ``keep``; returns the names removed."""
    complete = sorted(p for p in backups_dir.iterdir()
                      if p.is_dir() and _STAMPED.match(p.name) and (p / manifest.NAME).is_file())
    removed = []
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
        removed.append(old.name)
    return removed
