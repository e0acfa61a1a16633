"""The ledger of batches (``ingest.batches``) as the API shows it, and the review of held batches."""

from __future__ import annotations

import json
import time

from appliance.errors import Conflict, NotFound

from .engine import staging_table
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
    out = []
    for r in rows:
        d = dict(zip(BATCH_FIELDS, r, strict=True))
        d["reasons"] = json.loads(d["reasons"] or "[]")
        d["psi"] = json.loads(d["psi"] or "{}")
        out.append(d)
    return out
