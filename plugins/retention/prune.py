"""The ``retention`` job: prune what is older than its configured age, and nothing else.

Prediction logs (``serving.predictions`` and ``serving.feedback`` by ``ts``), events and job log lines (by
``time``), and finished jobs with their logs (by when they finished) are deleted by age; checkpoints, deleted
runs' rows, monitor runs and feature-view index files by the plugins that keep them (``owners``). An artifact is
deleted only when it is older than ``orphan_artifacts_days`` AND no row of any catalog table mentions its hash:
every text column of every table is scanned, so a reference kept by any plugin (the registry's versions,
training's checkpoints, the feature store's training sets, a job's parameters or result) keeps the artifact, even
from plugins this one has never heard of. Events and job log lines are news, not owners: a checkpoint an epoch's
event names goes once its run no longer keeps it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path

from . import owners

# Every 64-digit window, overlapping, so a hash inside a longer run of hex digits is found too.
_HASH = re.compile(r"(?=([0-9a-f]{64}))")
_ARTIFACT = re.compile(r"^[0-9a-f]{64}$")
DAY = 86_400

#: The serving plugin's prediction-log tables, pruned by their ``ts`` column.
PREDICTION_TABLES = (("serving", "predictions"), ("serving", "feedback"))
#: Catalog tables whose mentions of a hash keep no artifact (see above).
NEWS = ("events", "job_logs")
FINISHED = ("succeeded", "failed", "cancelled")


def run(app, job, settings: dict) -> dict:
    now = time.time()
    result = {}
    job.progress(0.05, "prediction logs")
    result["predictions"] = prune_predictions(app.store.cursor(), now - settings["predictions_days"] * DAY)
    job.check_cancelled()
    job.progress(0.3, "events and job logs")
    db = app.catalog.db
    result["events"] = db.execute("delete from events where time < ?",
                                  [now - settings["events_days"] * DAY]).rowcount
    result["job_logs"] = db.execute("delete from job_logs where time < ?",
                                    [now - settings["job_logs_days"] * DAY]).rowcount
    result["jobs"] = prune_jobs(db, now - settings["jobs_days"] * DAY)
    job.check_cancelled()
    job.progress(0.4, "checkpoints, deleted runs, monitor runs, feature indexes")
    result.update(owners.prune(app.registry("services"), settings, now))
    job.check_cancelled()
    job.progress(0.6, "unreferenced artifacts")
    removed, freed = prune_artifacts(app.home.artifacts_dir, db, now - settings["orphan_artifacts_days"] * DAY)
    result["artifacts"] = removed
    result["artifact_bytes"] = freed
    job.log("pruned " + ", ".join(f"{k}: {v}" for k, v in result.items()))
    return result


def prune_predictions(cur, cutoff: float) -> dict[str, int]:
    present = {(s, t) for s, t in cur.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()").fetchall()}
    # The log's ts is a naive UTC timestamp (written from epoch seconds), so the cutoff is one too.
    limit = dt.datetime.fromtimestamp(cutoff, dt.UTC).replace(tzinfo=None)
    out = {}
    for schema, table in PREDICTION_TABLES:
        if (schema, table) in present:
            out[f"{schema}.{table}"] = cur.execute(f"delete from {schema}.{table} where ts < ?",
                                                   [limit]).fetchone()[0]
    return out


def prune_jobs(db, before: float) -> int:
    """Delete jobs that finished before ``before``, with their log lines; returns the jobs deleted."""
    finished = f"select id from jobs where state in ({', '.join('?' * len(FINISHED))}) and finished < ?"
    db.execute("begin immediate")
    try:
        db.execute(f"delete from job_logs where job_id in ({finished})", [*FINISHED, before])
        deleted = db.execute(f"delete from jobs where id in ({finished})", [*FINISHED, before]).rowcount
    except BaseException:
        db.execute("rollback")
        raise
    db.execute("commit")
    return deleted


def referenced_hashes(db) -> set[str]:
    """Every run of 64 hex digits in any column of any catalog table but the news (``NEWS``), read in one
    transaction.

    Every column, whatever its declared type: SQLite stores text in an INTEGER column just as well.
    """
    refs: set[str] = set()
    conn = db.conn
    conn.execute("begin")
    try:
        tables = [r[0] for r in conn.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'") if r[0] not in NEWS]
        for table in tables:
            cols = [c[1] for c in conn.execute(f'pragma table_info("{table}")')]
            for col in cols:
                for (value,) in conn.execute(f'select "{col}" from "{table}" where length("{col}") >= 64'):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        refs.update(_HASH.findall(value))
    finally:
        conn.execute("commit")
    return refs


def prune_artifacts(root: Path, db, cutoff: float) -> tuple[int, int]:
    """Delete artifacts (and abandoned temporary files) older than ``cutoff`` that no catalog row mentions."""
    old = []
    # put_file writes its temporary file at the top, put_bytes next to the artifact: look in both places.
    places = [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for place in places:
        for path in place.iterdir():
            is_artifact = place is not root and _ARTIFACT.match(path.name)
            if not (is_artifact or path.name.startswith(".tmp-")) or not path.is_file():
                continue
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime < cutoff:
                old.append((path, mtime))
    if not old:
        return 0, 0
    refs = referenced_hashes(db)
    removed = freed = 0
    for path, mtime in old:
        if path.name in refs:
            continue
        try:
            st = path.stat()
            # Writing an artifact that already exists refreshes its time: it was just put again, so a row
            # referencing it may be on its way. Only a file untouched since the scan is deleted.
            if st.st_mtime != mtime:
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
        freed += st.st_size
    return removed, freed
