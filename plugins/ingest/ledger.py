"""The ledger of batches (``ingest.batches``) as the API shows it, and the review of held batches."""

from __future__ import annotations

import json
import time

from appliance.errors import Conflict, NotFound

from .engine import VISIBLE, staging_table
from .sql import ident


def decide(app, batch_id: int, approve: bool) -> dict:
    """Approve (merge into the raw table) or reject (drop) a held batch, in one transaction."""
    cur = app.store.cursor()
    rows = cur.execute("select source, state from ingest.batches where id = ?", [batch_id]).fetchall()
    if not rows:
        raise NotFound(f"no batch {batch_id}")
    source, state = rows[0]
    if state != "held":
        raise Conflict(f"batch {batch_id} is {state}; only a held batch can be approved or rejected")
    staged = staging_table(source, batch_id)
    cur.execute("begin").fetchall()
    try:
        if approve:
            cur.execute(f"insert into raw.{ident(source)} select * from {staged}").fetchall()
        cur.execute(f"drop table {staged}").fetchall()
        cur.execute("update ingest.batches set state = ?, decided = ? where id = ?",
                    ["approved" if approve else "rejected", time.time(), batch_id]).fetchall()
        cur.execute("commit").fetchall()
    except BaseException:
        cur.execute("rollback").fetchall()
        raise
    return batch_record(cur, batch_id)


def behind(cur, table: str) -> list[list[int]] | None:
    """The batches whose rows are in ``table`` now, as ``[first, last]`` id ranges (accepted, or held and then
    approved); None when ``table`` is no source's raw table. Read on the caller's cursor, so inside its
    transaction the answer matches the rows it reads there."""
    schema, _, source = table.partition(".")
    if schema != "raw" or not source:
        return None
    ids = [r[0] for r in cur.execute("select id from ingest.batches where source = ? and state in (?, ?) order by id",
                                     [source.strip('"'), *VISIBLE]).fetchall()]
    ranges: list[list[int]] = []
    for i in ids:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def batches_in(cur, ranges: list[list[int]]) -> list[dict]:
    """The ledger records of the batches in ``[first, last]`` id ranges, oldest first."""
    if not ranges:
        return []
    firsts, lasts = [int(r[0]) for r in ranges], [int(r[1]) for r in ranges]
    rows = cur.execute(f"select {', '.join(BATCH_FIELDS)} from ingest.batches b where exists (select 1 from "
                       "(select unnest(?::BIGINT[]) lo, unnest(?::BIGINT[]) hi) r where b.id between r.lo and r.hi) "
                       "order by id", [firsts, lasts]).fetchall()
    return [_record(r) for r in rows]


BATCH_FIELDS = ("id", "source", "file", "content_hash", "size", "mtime", "time", "state", "rows_in", "accepted",
                "quarantined", "reasons", "psi", "label_rate", "job_id", "decided")


def batch_record(cur, batch_id: int) -> dict:
    rows = batch_records(cur, "where id = ?", [batch_id])
    if not rows:
        raise NotFound(f"no batch {batch_id}")
    return rows[0]


def batch_records(cur, where: str = "", params: list | None = None, limit: int = 1000) -> list[dict]:
    rows = cur.execute(f"select {', '.join(BATCH_FIELDS)} from ingest.batches {where} order by id desc "
                       f"limit {int(limit)}", params or []).fetchall()
    return [_record(r) for r in rows]


def _record(row: tuple) -> dict:
    d = dict(zip(BATCH_FIELDS, row, strict=True))
    d["reasons"] = json.loads(d["reasons"] or "[]")
    d["psi"] = json.loads(d["psi"] or "{}")
    return d
