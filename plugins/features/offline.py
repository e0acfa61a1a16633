"""The offline store: each view version's history as a DuckDB table ``features."<view>__v<N>"``.

Materialization is incremental from a watermark, the newest event time already in the table, read from the
table itself so a retried job recomputes exactly what is missing. Rolling windows need history before the
watermark, so the source is read from ``watermark - longest window``; only rows after the watermark are added.
Rows that arrive later with an event time at or before the watermark need a full rematerialization.

Each (entity keys, event time) appears once in the offline table: duplicates in the source are resolved here by
a fixed order over the feature values, so point-in-time joins never have to break ties.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance import BadRequest

from .definitions import WINDOW_FUNCTIONS, FeatureView

SCHEMA = "features"
TEMPORAL = ("TIMESTAMP", "DATE")
NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
                     r"FLOAT|DOUBLE|DECIMAL.*)$")


class ViewError(BadRequest):
    """A feature view that does not fit its source; ``key`` is the config key to blame."""

    def __init__(self, message: str, key: str, *, title: str | None = None):
        super().__init__(message, title=title or "Bad feature view")
        self.key = key


class SourceMissing(Exception):
    """The view's source does not exist yet (no ingest has run); not an error in the definition."""


def fetch(con, sql: str, params: list | None = None) -> list[tuple]:
    """Run a statement and drain its result: on DuckDB 2.0 an undrained result blocks the connection."""
    return con.execute(sql, params or []).fetchall()


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(view: str, version: int) -> str:
    return f"{SCHEMA}.{q(f'{view}__v{version}')}"


def source_relation(view: FeatureView) -> str:
    if view.source_is_table:
        return ".".join(q(p) for p in view.source.split("."))
    return f"read_parquet('{view.source}')"


@dataclass
class Schema:
    """What a view version produces: its column types, and which columns are features."""

    columns: dict[str, str]  # name -> DuckDB type, keys and event time included
    features: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "features": self.features}


def _transformed(view: FeatureView) -> str:
    body = view.sql or "select * from source"
    return f"with source as (select * from {source_relation(view)}) select * from ({body}) _sql"


def describe(con, view: FeatureView) -> Schema:
    """Check the view against its source; raises ``SourceMissing`` or ``BadRequest`` naming the view."""
    try:
        fetch(con, f"describe select * from {source_relation(view)}")
    except Exception as exc:
        raise SourceMissing(first_line(exc)) from None
    try:
        cols = dict(r[:2] for r in fetch(con, f"describe {_transformed(view)}"))
    except Exception as exc:
        raise ViewError(f"feature view {view.name!r}: its sql failed: {first_line(exc)}", "sql",
                        title="Feature view SQL failed") from None
    for key in [*view.join_keys, view.event_time]:
        if key not in cols:
            role = "event_time" if key == view.event_time else "join key"
            raise ViewError(f"feature view {view.name!r}: column {key!r} ({role}) is not in its "
                            f"{'sql' if view.sql else 'source'} (columns: {', '.join(cols)})",
                            "event_time" if key == view.event_time else "entities")
    if not cols[view.event_time].startswith(TEMPORAL):
        raise ViewError(f"feature view {view.name!r}: event_time column {view.event_time!r} must be a "
                        f"timestamp or date, got {cols[view.event_time]}", "event_time")
    plain = [c for c in cols if c not in (*view.join_keys, view.event_time, "_batch_id")]
    if view.features is not None:
        for f in view.features:
            if f not in cols:
                raise ViewError(f"feature view {view.name!r}: feature {f!r} is not a column of its "
                                f"{'sql' if view.sql else 'source'} (columns: {', '.join(cols)})", "features")
        plain = list(view.features)
    for w in view.windows:
        if w.column is not None:
            if w.column not in cols:
                raise ViewError(f"feature view {view.name!r}: window column {w.column!r} is not a column "
                                f"(columns: {', '.join(cols)})", "windows")
            if w.function in ("sum", "mean") and not NUMERIC.match(cols[w.column]):
                raise ViewError(f"feature view {view.name!r}: window {w.feature!r} needs a numeric column, "
                                f"{w.column!r} is {cols[w.column]}", "windows")
        if w.feature in plain:
            raise ViewError(f"feature view {view.name!r}: window feature {w.feature!r} clashes with a column "
                            "of the same name; leave it out of features", "windows")
    features = plain + [w.feature for w in view.windows]
    if not features:
        raise ViewError(f"feature view {view.name!r} has no features: its source has only keys and time",
                        "source")
    names = [*view.join_keys, view.event_time, *features]
    try:
        types = fetch(con, f"describe {pipeline(view, Schema(dict.fromkeys(names, ''), features), None)}")
        return Schema(dict(r[:2] for r in types), features)
    except Exception as exc:
        raise ViewError(f"feature view {view.name!r}: its windows failed: {first_line(exc)}", "windows",
                        title="Feature view SQL failed") from None


def pipeline(view: FeatureView, schema: Schema, since_sql: str | None, *, count: bool = False) -> str:
    """The SELECT producing the view's rows after ``since_sql`` (an SQL timestamp literal), deduplicated; with
    ``count``, the number of those rows before deduplication."""
    keys = ", ".join(q(k) for k in view.join_keys)
    ev = q(view.event_time)
    plain = [f for f in schema.features if f not in {w.feature for w in view.windows}]
    cols = [*(q(k) for k in view.join_keys), ev, *(q(f) for f in plain)]
    for w in view.windows:
        arg = q(w.column) if w.column else "*"
        cols.append(f"{WINDOW_FUNCTIONS[w.function]}({arg}) over (partition by {keys} order by {ev} range between "
                    f"to_seconds({w.seconds}) preceding and current row) as {q(w.feature)}")
    lookback = max((w.seconds for w in view.windows), default=0)
    scan = "_t"
    if since_sql is not None:
        lo = f"{since_sql} - to_seconds({lookback})" if lookback else since_sql
        scan = f"(select * from _t where {ev} >= {lo})"
    keep = f"where {ev} > {since_sql}" if since_sql is not None else ""
    order = ", ".join(f"{q(f)} nulls last" for f in schema.features)
    head = f"with _t as ({_transformed(view)}), _w as (select {', '.join(cols)} from {scan} _s) "
    if count:
        return f"{head} select count(*) from _w {keep}"
    return (f"{head} select {', '.join(q(c) for c in schema.columns)} from _w {keep} "
            f"qualify row_number() over (partition by {keys}, {ev} order by {order}) = 1")


SEEN = f"{SCHEMA}._source_seen"
#: How the row kept among duplicates is chosen, in words for results and logs.
KEPT = "kept the first in order of its feature values (nulls last)"


def _source_rows_until(con, view: FeatureView, watermark: str, ev_type: str) -> int:
    """Rows of the view's source (after its sql) with an event time at or before ``watermark`` (as text)."""
    literal = f"cast('{watermark}' as {ev_type})"
    return fetch(con, f"with _t as ({_transformed(view)}) select count(*) from _t where {q(view.event_time)} <= "
                      f"{literal}")[0][0]


def materialize(con, view: FeatureView, version: int, schema: Schema, *, full: bool = False,
                batches: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Add the view's new rows to its offline table; returns rows added, total and the watermark before/after.

    ``batches(con)``, when given, says which ingest batches the source holds; it is asked inside the same
    transaction, so the answer (``"batches"``) names exactly the rows this materialization read."""
    table = table_name(view.name, version)
    ev_type = schema.columns[view.event_time]
    fetch(con, f"create schema if not exists {SCHEMA}")
    fetch(con, f"create table if not exists {SEEN} (view VARCHAR, version INTEGER, watermark VARCHAR, "
               "source_rows BIGINT)")
    ddl = ", ".join(f"{q(c)} {t}" for c, t in schema.columns.items())
    fetch(con, "begin transaction")
    try:
        if full:
            fetch(con, f"drop table if exists {table}")
        fetch(con, f"create table if not exists {table} ({ddl})")
        before, before_text = fetch(con, f"select max({q(view.event_time)}), max({q(view.event_time)})::VARCHAR "
                                         f"from {table}")[0]
        since = None if before is None else f"cast('{before_text}' as {ev_type})"
        late = 0
        if before is not None:
            # Rows at or before the watermark that were not there when it was set arrived late: an incremental
            # run cannot place them (windows before them are already written), so they are counted, not lost
            # in silence.
            seen = fetch(con, f"select source_rows from {SEEN} where view = ? and version = ? and watermark = ?",
                         [view.name, version, before_text])
            if seen:
                late = max(0, _source_rows_until(con, view, before_text, ev_type) - seen[0][0])
        try:
            candidates = fetch(con, pipeline(view, schema, since, count=True))[0][0]
            added = fetch(con, f"insert into {table} {pipeline(view, schema, since)}")[0][0]
        except Exception as exc:
            raise BadRequest(f"feature view {view.name!r}: materialization failed: {first_line(exc)}",
                             title="Feature view SQL failed") from None
        total, after, after_text = fetch(con, f"select count(*), max({q(view.event_time)}), "
                                              f"max({q(view.event_time)})::VARCHAR from {table}")[0]
        fetch(con, f"delete from {SEEN} where view = ? and version = ?", [view.name, version])
        if after is not None:
            fetch(con, f"insert into {SEEN} values (?, ?, ?, ?)",
                  [view.name, version, after_text, _source_rows_until(con, view, after_text, ev_type)])
        behind = batches(con) if batches is not None else None
        fetch(con, "commit")
    except BaseException:
        fetch(con, "rollback")
        raise
    return {"rows_added": int(added), "rows": int(total), "watermark_before": before, "watermark": after,
            "duplicates_dropped": int(candidates - added), "late_rows_skipped": int(late), "batches": behind}


def latest_rows(con, view: FeatureView, version: int, schema: Schema, since: Any = None):
    """The newest row per entity (after ``since``, when given) as an Arrow table."""
    keys = ", ".join(q(k) for k in view.join_keys)
    ev = q(view.event_time)
    where = f"where {ev} > ?" if since is not None else ""
    sql = (f"select {', '.join(q(c) for c in schema.columns)}, epoch({ev}) as _epoch "
           f"from {table_name(view.name, version)} {where} "
           f"qualify row_number() over (partition by {keys} order by {ev} desc) = 1")
    return con.sql(sql, params=[since] if since is not None else None).to_arrow_table()


def table_exists(con, view: str, version: int) -> bool:
    return bool(fetch(con, "select count(*) from information_schema.tables where table_schema = ? "
                           "and table_name = ?", [SCHEMA, f"{view}__v{version}"])[0][0])


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
