"""Point-in-time correct training sets: for each spine row and view, the view's row with the same entity keys
and the newest event time <= the spine's time, never a later one.

Two ways to the same rows. ``training_table`` reads each view's sorted index (see ``index``): a sort of the
spine and binary searches, no sort of the feature table. ``training_query`` is one DuckDB ASOF join per view;
it serves a view whose times cannot be indexed, and tests hold the two to each other. The offline table holds
one row per (keys, event time), so the match is unique: the same inputs always give the same rows. The TTL is
applied to the matched row afterwards: in the ASOF ON clause it turns the join into a nested loop. Spine rows
without a match (or with an expired one) keep NULLs. Rows come out in spine order.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from appliance import BadRequest

from .definitions import FeatureView
from .index import KID, SortedIndex
from .offline import TEMPORAL, Schema, fetch, q, table_name

REF = re.compile(r"^(?P<view>[A-Za-z_][A-Za-z0-9_]*)(@(?P<version>\d+))?:(?P<feature>\*|[A-Za-z_][A-Za-z0-9_]*)$")
CHUNK_ROWS = 1 << 22  # spine rows matched at once (~0.4 GB of working arrays): bounds memory for any spine
ROW_GROUP = 131_072  # rows per Parquet row group: DuckDB's size, so readers can split a snapshot
_RUN_ROWS = 65_536  # below four of these, threads cost more than they save
SIGNED = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")
INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


@dataclass
class Selection:
    """The features wanted from one version of one view."""

    view: FeatureView
    version: int
    schema: Schema
    features: list[str]

    @property
    def label(self) -> str:
        return f"{self.view.name}@{self.version}"


def parse_ref(ref: object) -> tuple[str, int | None, str]:
    """``"view:feature"``, ``"view@2:feature"`` or ``"view:*"`` as (view, version or None, feature)."""
    m = REF.match(ref) if isinstance(ref, str) else None
    if not m:
        raise BadRequest(f"feature {ref!r} is not of the form view:feature (or view@VERSION:feature, view:*)",
                         title="Unknown feature")
    return m["view"], int(m["version"]) if m["version"] else None, m["feature"]


def describe_spine(con, relation: str, event_time: str) -> dict[str, str]:
    try:
        cols = dict(r[:2] for r in fetch(con, f"describe select * from {relation} _spine"))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"the spine cannot be read: {msg}", title="Bad spine") from None
    if event_time not in cols:
        raise BadRequest(f"the spine has no timestamp column {event_time!r} (columns: {', '.join(cols)}); "
                         "name it with event_time", title="Bad spine")
    if not cols[event_time].startswith(TEMPORAL):
        raise BadRequest(f"spine column {event_time!r} must be a timestamp or date, got {cols[event_time]}",
                         title="Bad spine")
    return cols


def check_keys(spine_cols: dict[str, str], selections: list[Selection]) -> None:
    """Every view's join keys must be spine columns of a matching type."""
    for sel in selections:
        for key in sel.view.join_keys:
            entity = next(e for e, keys in sel.view.entities.items() if key in keys)
            if key not in spine_cols:
                raise BadRequest(f"the spine has no column {key!r}, the join key of entity {entity!r} that "
                                 f"feature view {sel.view.name!r} needs", title="Bad spine")
            want, got = sel.schema.columns[key], spine_cols[key]
            if _key_family(want) != _key_family(got):
                raise BadRequest(f"spine column {key!r} is {got}, but entity {entity!r} of feature view "
                                 f"{sel.view.name!r} has {key!r} as {want}", title="Key type mismatch")


def _key_family(duckdb_type: str) -> str:
    return "integer" if duckdb_type in INTEGER else duckdb_type


def output_columns(spine_cols: dict[str, str], selections: list[Selection]) -> dict[str, str]:
    """Output column name -> ``view:feature``; a name taken twice is refused."""
    out: dict[str, str] = {}
    for sel in selections:
        for f in sel.features:
            name = f"{sel.view.name}__{f}"
            if name in spine_cols or name in out:
                raise BadRequest(f"feature {sel.view.name}:{f} would be column {name!r}, which is taken "
                                 "(by the spine or another version of the view)")
            out[name] = f"{sel.label}:{f}"
    return out


def training_query(relation: str, spine_cols: dict[str, str], event_time: str,
                   selections: list[Selection]) -> str:
    """The SELECT for the training set: spine columns, then ``view__feature`` columns, in spine order."""
    ts = q(event_time)
    ctes = [f"_spine as (select row_number() over () as _spine_row, * from {relation} _s)"]
    joins, cols = [], [f"s.{q(c)}" for c in spine_cols]
    for i, sel in enumerate(selections):
        v = f"_v{i}"
        ev_type = sel.schema.columns[sel.view.event_time]
        ctes.append(f"{v} as (select {', '.join(q(k) for k in sel.view.join_keys)}, "
                    f"{q(sel.view.event_time)} as _ev, {', '.join(q(f) for f in sel.features)} "
                    f"from {table_name(sel.view.name, sel.version)})")
        on = [f"{_cast(f's.{q(k)}', spine_cols[k], sel.schema.columns[k])} = {v}.{q(k)}"
              for k in sel.view.join_keys]
        on.append(f"{_cast(f's.{ts}', spine_cols[event_time], ev_type)} >= {v}._ev")
        joins.append(f"asof left join {v} on {' and '.join(on)}")
        for f in sel.features:
            value = f"{v}.{q(f)}"
            if sel.view.ttl_s is not None:
                value = f"case when {v}._ev >= s.{ts} - to_seconds({sel.view.ttl_s}) then {value} end"
            cols.append(f"{value} as {q(f'{sel.view.name}__{f}')}")
    return (f"with {', '.join(ctes)} select {', '.join(cols)} from _spine s {' '.join(joins)} "
            f"order by s._spine_row")


def training_table(con, relation: str, spine_cols: dict[str, str], event_time: str, selections: list[Selection],
                   indexes: list[SortedIndex], chunk_rows: int | None = None) -> pa.Table:
    """The same rows as ``training_query``, from each view's sorted index instead of an ASOF join."""
    return pa.concat_tables(training_tables(con, relation, spine_cols, event_time, selections, indexes, chunk_rows))


def training_tables(con, relation: str, spine_cols: dict[str, str], event_time: str, selections: list[Selection],
                    indexes: list[SortedIndex], chunk_rows: int | None = None) -> Iterator[pa.Table]:
    """The training set as consecutive tables of up to ``chunk_rows`` spine rows, so any spine fits in memory.

    DuckDB streams the spine in its order on ``con`` (keep it for this until the last table); each row's entity
    number comes from a binary search of the index's keys (one integer key) or a hash join on them (any other
    key). The match, the TTL and the gather of feature values are then array work on the memory-mapped index.
    """
    ts = q(event_time)
    tag = uuid.uuid4().hex[:8]
    kid_col, at_col, key_col, now_col = (f"_{tag}_{name}" for name in ("kid", "at", "key", "now"))
    extra, joins, registered, at_names, key_names = [], [], [], [], {}
    if spine_cols[event_time] == "TIMESTAMP":
        now_col = event_time  # already microseconds since the epoch: read as it is, not copied
    else:
        extra.append(f"epoch_us(s.{ts}) as {now_col}")
    for i, (sel, ix) in enumerate(zip(selections, indexes, strict=True)):
        keys = sel.view.join_keys
        if _searchable(sel):
            if spine_cols[keys[0]] == sel.schema.columns[keys[0]]:
                key_names[i] = keys[0]  # the spine's own key column
            else:
                key_names[i] = f"{key_col}{i}"
                extra.append(f"cast(s.{q(keys[0])} as {sel.schema.columns[keys[0]]}) as {key_names[i]}")
        else:
            name = f"_{tag}_keys{i}"
            con.register(name, ix.keys)
            registered.append(name)
            on = [f"{_cast(f's.{q(k)}', spine_cols[k], sel.schema.columns[k])} = {name}.{q(k)}" for k in keys]
            joins.append(f"left join {name} on {' and '.join(on)}")
            extra.append(f"{name}.{KID} as {kid_col}{i}")
        ev_type = sel.schema.columns[sel.view.event_time]
        if ev_type == spine_cols[event_time]:
            at_names.append(now_col)  # the spine's own time, no cast: one column serves both
        else:
            at_names.append(f"{at_col}{i}")
            extra.append(f"epoch_us({_cast(f's.{ts}', spine_cols[event_time], ev_type)}) as {at_col}{i}")
    spine_cols_sql = ", ".join(f"s.{q(c)}" for c in spine_cols)
    # A plain scan keeps the spine's order; a join does not, so then the rows are numbered and put back.
    source = (f"(select row_number() over () as _spine_row, * from {relation} _s) s {' '.join(joins)} "
              f"order by s._spine_row") if joins else f"{relation} s"
    names = [f"{sel.view.name}__{f}" for sel in selections for f in sel.features]

    def match(part: pa.Table) -> list[pa.Array]:
        """The feature columns for a run of spine rows."""
        now = _int64(part.column(now_col))
        columns = []
        for i, (sel, ix) in enumerate(zip(selections, indexes, strict=True)):
            if _searchable(sel):
                key = part.column(key_names[i])
                kid = ix.number(_int64(key), key.is_null().to_numpy())
            else:
                kid = _int64(part.column(f"{kid_col}{i}"))
            at = part.column(at_names[i])
            kid = np.where(at.is_null().to_numpy(), -1, kid)
            ttl = sel.view.ttl_s
            pos = ix.lookup(kid, _int64(at), None if ttl is None else now - ttl * 1_000_000)
            columns += ix.gather(sel.features, pos)
        return columns

    def matched(spine: pa.Table) -> pa.Table:
        # numpy lets go of the GIL in its sorts, searches and gathers: runs of rows on threads use every core.
        n = spine.num_rows
        runs = min(os.cpu_count() or 1, 4) if n >= 4 * _RUN_ROWS else 1
        cuts = [n * r // runs for r in range(runs + 1)]
        parts = [spine.slice(a, b - a) for a, b in itertools.pairwise(cuts)]
        if runs == 1:
            results = [match(parts[0])]
        else:
            with ThreadPoolExecutor(runs, thread_name_prefix="training-set") as pool:
                results = list(pool.map(match, parts))
        out = spine.select(list(spine_cols))
        for j, name in enumerate(names):
            out = out.append_column(name, pa.chunked_array([r[j] for r in results], type=results[0][j].type))
        return out

    reader = None
    try:
        spine = None if extra or joins else _parquet_spine(con, relation, spine_cols, chunk_rows or CHUNK_ROWS)
        if spine is None:
            reader = con.sql(f"select {', '.join([spine_cols_sql, *extra])} from {source}").to_arrow_reader(
                chunk_rows or CHUNK_ROWS)
            spine = reader, reader.schema
        batches, schema = spine
        empty = True
        for batch in batches:
            empty = False
            yield matched(pa.Table.from_batches([batch]))
        if empty:
            yield matched(schema.empty_table())
    finally:
        if reader is not None:
            reader.close()  # the connection takes no other statement while its result is open
        for name in registered:
            con.unregister(name)


def _parquet_spine(con, relation: str, spine_cols: dict[str, str], chunk_rows: int):
    """A Parquet spine's batches read by pyarrow (its columns decoded side by side, nothing copied out of
    DuckDB: about half the time), with their schema; None unless no column needs computing and pyarrow gives
    exactly the Arrow types DuckDB would, so a snapshot's types never depend on the path taken."""
    m = re.fullmatch(r"read_parquet\('([^']*)'\)", relation)
    if m is None:
        return None
    try:
        file = pq.ParquetFile(m[1])
        got = pa.schema([file.schema_arrow.field(c) for c in spine_cols])
        want = con.sql(f"select {', '.join(q(c) for c in spine_cols)} from {relation} limit 0").to_arrow_table().schema
    except (OSError, KeyError, pa.ArrowException, duckdb.Error):
        return None
    if got.types != want.types:
        return None
    return file.iter_batches(batch_size=chunk_rows, columns=list(spine_cols)), got


def write_training_set(con, relation: str, spine_cols: dict[str, str], event_time: str,
                       selections: list[Selection], indexes: list[SortedIndex | None], out: BinaryIO,
                       scratch: Path, chunk_rows: int | None = None) -> int:
    """The training set as Parquet written to ``out``; returns its row count.

    From the sorted indexes: a chunk of spine rows at a time (a second cursor streams the spine meanwhile),
    each chunk written as the next row groups of one file. One ASOF query instead when a view has no index, or
    when a spine column has a type Parquet cannot take from Arrow (an interval, a union): DuckDB writes that
    file at ``scratch`` and it is copied to ``out``.
    """
    if all(ix is not None for ix in indexes):
        spine_con = con.cursor()
        tables = training_tables(spine_con, relation, spine_cols, event_time, selections, indexes, chunk_rows)
        try:
            first = next(tables)
            if _parquet_can_take(first.schema):
                return _write_parquet(itertools.chain([first], tables), first.schema, out)
        finally:
            tables.close()
            spine_con.close()
    query = training_query(relation, spine_cols, event_time, selections)
    try:
        rows = fetch(con, f"copy ({query}) to '{scratch}' (format parquet, compression zstd)")[0][0]
        with open(scratch, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    finally:
        scratch.unlink(missing_ok=True)
    return rows


def _write_parquet(tables: Iterator[pa.Table], schema: pa.Schema, out: BinaryIO) -> int:
    # The file is hashed as it is written, so the write takes the longer of encoding and hashing: what makes
    # the file smaller cheaply wins. Integers and times are delta-encoded (a third smaller than plain, no
    # slower), then LZ4, which costs little where nothing compresses (zstd took twice the encoding time for no
    # smaller file on the bench's data). Dictionaries only for text: on float features they are tried, fail
    # and cost a third of the write.
    text, delta = [], {}
    for f in schema:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_string_view(t):
            text.append(f.name)
        elif pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date32(t) or pa.types.is_time(t):
            delta[f.name] = "DELTA_BINARY_PACKED"
    rows = 0
    with pq.ParquetWriter(pa.PythonFile(out, mode="w"), schema, compression="lz4", use_dictionary=text or False,
                          column_encoding=delta or None) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=ROW_GROUP)
            rows += table.num_rows
    return rows


def _parquet_can_take(schema: pa.Schema) -> bool:
    try:
        pq.ParquetWriter(pa.BufferOutputStream(), schema).close()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, TypeError):
        return False
    return True


def _searchable(sel: Selection) -> bool:
    """One join key that is a signed integer: its entity numbers come from a binary search, no join."""
    keys = sel.view.join_keys
    return len(keys) == 1 and sel.schema.columns[keys[0]] in SIGNED


def _int64(col) -> np.ndarray:
    """An Arrow column (integers, or timestamps in microseconds) as int64, NULL as -1 (callers mask NULLs
    separately where -1 could be a value)."""
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    if col.null_count:
        col = pc.fill_null(col, -1)
    return col.to_numpy().astype(np.int64, copy=False)


def _cast(expr: str, have: str, want: str) -> str:
    return expr if have == want else f"cast({expr} as {want})"
