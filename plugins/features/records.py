"""The feature store's catalog tables: view versions (definition, schema, statistics) and training sets."""

from __future__ import annotations

import json
import time
from typing import Any

from appliance import Migrations, NotFound

migrations = Migrations("features")


@migrations()
def m001_tables(db) -> None:
    db.execute("""
        create table feature_view_versions (
            view text not null,
            version integer not null,
            digest text not null,
            definition text not null,
            description text not null default '',
            schema text,
            created real not null,
            materialized real,
            rows integer not null default 0,
            watermark text,
            stats text,
            primary key (view, version)
        )""")
    db.execute("""
        create table training_sets (
            id integer primary key autoincrement,
            name text not null,
            sha256 text not null,
            manifest text not null,
            created real not null,
            job_id integer
        )""")
    db.execute("create index training_sets_name on training_sets(name, id)")


@migrations()
def m002_batches(db) -> None:
    # The ingest batches behind a view version's table at its last materialization, as [first, last] id ranges:
    # what a training set (and so a model) records as the source rows it came from. Null: not an ingested source.
    db.execute("alter table feature_view_versions add column batches text")


def _version(row: dict) -> dict[str, Any]:
    out = dict(row)
    for key in ("definition", "schema", "stats", "batches"):
        out[key] = json.loads(row[key]) if row[key] else None
    return out


def versions(db, view: str) -> list[dict[str, Any]]:
    return [_version(r) for r in db.query("select * from feature_view_versions where view = ? order by version",
                                          [view])]


def version(db, view: str, number: int | None = None) -> dict[str, Any]:
    """One version of a view (the newest when ``number`` is None)."""
    sql, args = "select * from feature_view_versions where view = ?", [view]
    if number is not None:
        sql, args = sql + " and version = ?", [view, number]
    rows = list(db.query(sql + " order by version desc limit 1", args))
    if not rows:
        which = f"version {number} of feature view {view!r}" if number is not None else f"feature view {view!r}"
        raise NotFound(f"no {which}", title="Unknown feature view")
    return _version(rows[0])


def sync(db, view: str, digest: str, definition: dict, description: str, schema: dict | None) -> int:
    """The version number of this definition: the one that had it before (a revert), else a new one."""
    same = list(db.query("select version from feature_view_versions where view = ? and digest = ? "
                         "order by version desc limit 1", [view, digest]))
    if same:
        number = same[0]["version"]
        db.execute("update feature_view_versions set description = ?, schema = coalesce(schema, ?) "
                   "where view = ? and version = ?",
                   [description, json.dumps(schema) if schema else None, view, number])
        return number
    number = db.execute("select coalesce(max(version), 0) + 1 from feature_view_versions where view = ?",
                        [view]).fetchone()[0]
    db.execute("insert into feature_view_versions (view, version, digest, definition, description, schema, created)"
               " values (?, ?, ?, ?, ?, ?, ?)",
               [view, number, digest, json.dumps(definition), description,
                json.dumps(schema) if schema else None, time.time()])
    return number


def set_schema(db, view: str, number: int, schema: dict) -> None:
    db.execute("update feature_view_versions set schema = ? where view = ? and version = ?",
               [json.dumps(schema), view, number])


def record_materialized(db, view: str, number: int, rows: int, watermark: Any, stats: dict,
                        batches: list | None = None) -> None:
    db.execute("update feature_view_versions set materialized = ?, rows = ?, watermark = ?, stats = ?, batches = ? "
               "where view = ? and version = ?",
               [time.time(), rows, str(watermark) if watermark is not None else None, json.dumps(stats, default=str),
                json.dumps(batches) if batches is not None else None, view, number])


def _training_set(row: dict) -> dict[str, Any]:
    return {**row, "manifest": json.loads(row["manifest"])}


def add_training_set(db, name: str, sha256: str, manifest: dict, job_id: int | None) -> dict[str, Any]:
    cur = db.execute("insert into training_sets (name, sha256, manifest, created, job_id) values (?, ?, ?, ?, ?)",
                     [name, sha256, json.dumps(manifest, default=str), time.time(), job_id])
    return training_set(db, cur.lastrowid)


def training_set(db, id_or_name: int | str) -> dict[str, Any]:
    """A training set by id, or the newest one of that name."""
    key = str(id_or_name)
    if key.isdigit() and int(key) < 2**63:  # a longer number is no id SQLite can hold, and no name either
        rows = list(db.query("select * from training_sets where id = ?", [int(key)]))
    else:
        rows = list(db.query("select * from training_sets where name = ? order by id desc limit 1", [key]))
    if not rows:
        raise NotFound(f"no training set {id_or_name!r}", title="Unknown training set")
    return _training_set(rows[0])


def training_set_of_job(db, job_id: int) -> dict[str, Any] | None:
    rows = list(db.query("select * from training_sets where job_id = ?", [job_id]))
    return _training_set(rows[0]) if rows else None


def training_sets(db, limit: int = 100) -> list[dict[str, Any]]:
    return [_training_set(r) for r in db.query("select * from training_sets order by id desc limit ?", [limit])]
