"""The sorted index: a view version's history ordered by entity and event time, for point-in-time lookups.

A DuckDB ASOF join sorts the whole feature table on every training-set build; with ten million rows that sort
is most of the build. The offline table only changes when it is materialized, so the sort is done then, once:
the rows in (entity, time) order with each entity's first row, written as Arrow files in the home and
memory-mapped when a build reads them. A build then sorts only its spine and finds each spine row's match with
a binary search inside its entity's rows.

Entities are numbered by their position in the sorted list of distinct keys. A spine finds its numbers by a
lookup in that list (one integer key) or one hash join against it (composite and string keys), after which
every key works like an integer.

The files are a cache of the offline table: a missing, stale or damaged index is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.artifacts import fsync_path

from .definitions import FeatureView
from .offline import Schema, fetch, q, table_name

KID = "_kid"  # the entity number column in the keys table
TIME = "_t"  # event time as microseconds since the epoch; in the saved rows file, the search key


# Composite search keys must stay below 2**63; one group of entities spans at most this many of them.
_KEY_ROOM = 1 << 62
_FILE = re.compile(r"^(?P<view>.+)__v(?P<version>\d+)\.")  # <view>__v<N>.json, <view>__v<N>.<token>.rows.arrow...
_DENSE_MAX = 1 << 25  # entries in an id -> entity number table (128 MB of int32 at most)
_SEARCH_BLOCK = 1024  # entities searched together: ~100k rows of keys at a hundred rows an entity


class Unindexable(Exception):
    """Event times spread too far apart (over ~146,000 years in microseconds) for 64-bit search keys."""


@dataclass
class SortedIndex:
    keys: pa.Table  # distinct join keys in sorted order, plus KID (their row number)
    starts: np.ndarray  # int64, one more than there are entities: entity i's rows are starts[i]:starts[i + 1]
    search: np.ndarray  # int64 per row, ascending within each group of entities: see ``build``
    values: pa.Table  # the feature columns, row for row with ``search``
    t0: int  # the earliest event time (microseconds)
    span: int  # latest - earliest + 1
    per_group: int  # entities per group
    stamp: dict  # the offline table's row count and watermark when this was built
    _dense: Any = field(default=None, repr=False)  # see _dense_table: None until first asked, False for sparse

    def lookup(self, kid: np.ndarray, at_us: np.ndarray, not_before_us: np.ndarray | None = None) -> np.ndarray:
        """For each (entity number, time): the row with the newest time <= it in that entity, or -1; with
        ``not_before_us`` (the TTL's cut-off per query), also -1 where that row is older than the cut-off.

        Each query becomes a search key like the rows' (entity offset in its group, time since t0). The
        queries are searched in entity order, so one pass of binary searches walks the rows in order instead
        of jumping about (on ten million rows, unordered searches cost ten times more in cache misses).
        """
        valid = (kid >= 0) & (at_us >= self.t0)
        if not valid.any():
            return np.full(len(kid), -1, dtype=np.int64)
        # A query that cannot match is searched as entity 0 at t0 and masked out after: cheaper than picking
        # the others out and putting them back.
        since = np.minimum(np.where(valid, at_us, self.t0), self.t0 + self.span - 1) - self.t0
        order, k = _locality_order(np.where(valid, kid, 0), since)
        since = since[order]
        want = self._base(k) + since
        # Queries are in entity order, so a block of entities has one slice of queries and one of rows: each
        # block is searched on its own, its rows small enough to stay in cache (a third faster than one search
        # over all rows). A block never spans two groups, whose search keys are not comparable.
        n = len(self.starts) - 1
        edges = np.union1d(np.arange(0, n, _SEARCH_BLOCK), np.arange(0, n, self.per_group))
        edges = np.append(edges, n)
        cuts = np.searchsorted(k, edges)
        pos = np.empty(len(k), dtype=np.int64)
        for e0, e1, a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), cuts[:-1].tolist(), cuts[1:].tolist(),
                                strict=True):
            if a < b:
                lo, hi = int(self.starts[e0]), int(self.starts[e1])
                pos[a:b] = np.searchsorted(self.search[lo:hi], want[a:b], side="right") - 1 + lo
        # A search that lands before the entity's first row found only an earlier entity's rows: no match.
        hit = (pos >= self.starts[k]) & valid[order]
        if not_before_us is not None:
            # The matched row's time is its search key less the query's base: the same offset as ``want``.
            hit &= self.search[np.where(hit, pos, 0)] - want >= not_before_us[order] - self.t0 - since
        out = np.empty(len(kid), dtype=np.int64)
        out[order] = np.where(hit, pos, -1)
        return out

    def _base(self, kid: np.ndarray) -> np.ndarray:
        # Integer modulo is slow on big arrays; with one group it is the identity.
        return (kid if len(self.starts) - 1 <= self.per_group else kid % self.per_group) * self.span

    def gather(self, features: list[str], pos: np.ndarray) -> list[pa.Array]:
        """The features' values at rows ``pos``, NULL where ``pos`` is -1."""
        miss = pos < 0
        safe = np.where(miss, 0, pos)  # one index array for every feature
        out = []
        for feature in features:
            column = self.values.column(feature)
            kind = column.type
            if not len(column):
                out.append(pa.nulls(len(pos), kind))
            elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
                # A numpy gather is several times faster than Arrow's take with a null mask.
                null = miss | column.is_null().to_numpy(zero_copy_only=False)[safe] if column.null_count else miss
                out.append(pa.array(column.to_numpy()[safe], mask=null, type=kind))
            else:
                out.append(column.take(pa.array(pos, mask=miss)))
        return out

    def number(self, key: np.ndarray, null: np.ndarray) -> np.ndarray:
        """Entity numbers of single integer keys (-1 where unknown or NULL).

        Ids are usually dense, so a table indexed by key answers each in one step; sparse ids are searched in
        the sorted keys, in sorted order (unsorted searches miss the cache).
        """
        known = self.keys.column(0).to_numpy()
        if not len(known):
            return np.full(len(key), -1, dtype=np.int64)
        dense = self._dense_table(known)
        if dense is not None:
            at = key - int(known[0])
            inside = (at >= 0) & (at < len(dense)) & ~null
            return np.where(inside, dense.take(np.where(inside, at, 0)), -1).astype(np.int64, copy=False)
        order = np.argsort(key)
        kid = np.empty(len(key), dtype=np.int64)
        kid[order] = np.searchsorted(known, key[order])
        inside = kid < len(known)
        found = inside & ~null
        found[inside] &= known[kid[inside]] == key[inside]
        return np.where(found, kid, -1)

    def _dense_table(self, known: np.ndarray) -> np.ndarray | None:
        """Entity number by (key - smallest key), when the keys are dense enough for that to stay small."""
        if self._dense is None:
            width = int(known[-1]) - int(known[0]) + 1
            if width > min(8 * len(known) + 4096, _DENSE_MAX):
                self._dense = False
            else:
                table = np.full(width, -1, dtype=np.int32 if len(known) < 2**31 else np.int64)
                table[known - known[0]] = np.arange(len(known))
                self._dense = table
        return self._dense if self._dense is not False else None


def build(con, view: FeatureView, version: int, schema: Schema, per_group: int | None = None) -> SortedIndex:
    """Read the offline table in (keys, time) order. Rows with a NULL key or time can never match: left out.

    Each row's search key is (entity number mod per_group) * span + (time - t0): ascending through a group of
    entities, so one sorted array answers a group's queries with plain binary searches. per_group is as many
    entities as fit below 2**62; with a year of microsecond times that is about 146,000 (tests set it lower).
    """
    table = table_name(view.name, version)
    keys = ", ".join(q(k) for k in view.join_keys)
    ev = q(view.event_time)
    where = " and ".join(f"{q(c)} is not null" for c in [*view.join_keys, view.event_time])
    stamp = _stamp(con, view, version)
    rows = con.sql(f"select epoch_us({ev}) as {TIME}, {', '.join(q(f) for f in schema.features)} from {table} "
                   f"where {where} order by {keys}, {ev}").to_arrow_table()
    distinct = con.sql(f"select {keys}, count(*) as _n from {table} where {where} group by all "
                       f"order by {keys}").to_arrow_table()
    counts = distinct.column("_n").to_numpy().astype(np.int64)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    keys_table = distinct.drop_columns(["_n"]).append_column(KID, pa.array(np.arange(len(counts), dtype=np.int64)))
    times = rows.column(TIME).to_numpy()
    t0 = int(times.min()) if len(times) else 0
    span = int(times.max()) - t0 + 1 if len(times) else 1
    if span >= _KEY_ROOM:
        raise Unindexable(f"feature view {view.name!r}: event times span more than 64-bit keys can hold")
    per_group = min(per_group or _KEY_ROOM, max(1, _KEY_ROOM // span))
    search = np.repeat(np.arange(len(counts), dtype=np.int64), counts)  # each row's entity number, then in place:
    if len(counts) > per_group:
        search %= per_group
    search *= span
    search += times
    search -= t0
    return SortedIndex(keys_table, starts, search, rows.drop_columns([TIME]), t0, span, per_group, stamp)


def _stamp(con, view: FeatureView, version: int) -> dict:
    rows, newest = fetch(con, f"select count(*), max({q(view.event_time)})::varchar "
                              f"from {table_name(view.name, version)}")[0]
    return {"rows": int(rows), "watermark": newest}


def _locality_order(kid: np.ndarray, since: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order of queries by entity, then roughly by time, and their entity numbers in it: one sort of packed
    int64 (entity, time bucket, position), several times faster than an argsort. Any order gives the same
    answers; this one keeps each search near the last."""
    n = len(kid)
    row_bits = max(1, (n - 1).bit_length())
    kid_bits = max(1, int(kid.max()).bit_length())
    time_bits = 63 - row_bits - kid_bits
    if time_bits < 1:
        order = np.argsort(kid, kind="stable")
        return order, kid[order]
    shift = max(0, int(since.max()).bit_length() - time_bits)
    packed = (kid << (63 - kid_bits)) | ((since >> shift) << row_bits) | np.arange(n, dtype=np.int64)
    packed.sort()
    return packed & ((1 << row_bits) - 1), packed >> (63 - kid_bits)


class IndexFiles:
    """Indexes kept in a directory, one per view version: ``<view>__v<N>.json`` names its current files.

    A new index is written under fresh file names and goes live when its JSON is replaced, so a build that
    memory-mapped the previous files keeps reading them undisturbed until it finishes.
    """

    def __init__(self, root: Path):
        self.root = root

    def _meta(self, view: str, version: int) -> Path:
        return self.root / f"{view}__v{version}.json"

    def save(self, view: str, version: int, index: SortedIndex) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        rows = index.values.add_column(0, TIME, pa.array(index.search))
        names = {"rows": f"{view}__v{version}.{token}.rows.arrow", "keys": f"{view}__v{version}.{token}.keys.arrow",
                 "starts": f"{view}__v{version}.{token}.starts.npy"}
        _write_arrow(self.root / names["rows"], rows)
        _write_arrow(self.root / names["keys"], index.keys)
        np.save(self.root / names["starts"], index.starts)
        for name in names.values():  # on disk before the JSON names them: a crash never leaves a torn index live
            fsync_path(self.root / name)
        old = self._read_meta(view, version)
        tmp = self.root / f".{token}.json"
        tmp.write_text(json.dumps({"files": names, "stamp": index.stamp, "t0": index.t0, "span": index.span,
                                   "per_group": index.per_group}))
        os.replace(tmp, self._meta(view, version))
        if old:
            for name in old["files"].values():
                (self.root / name).unlink(missing_ok=True)

    def load(self, view: str, version: int) -> SortedIndex | None:
        meta = self._read_meta(view, version)
        if meta is None:
            return None
        try:
            rows = _read_arrow(self.root / meta["files"]["rows"])
            keys = _read_arrow(self.root / meta["files"]["keys"])
            starts = np.load(self.root / meta["files"]["starts"], mmap_mode="r")
        except (OSError, pa.ArrowInvalid, ValueError, KeyError, TypeError):
            return None  # half-deleted or damaged: the caller rebuilds it
        return SortedIndex(keys, np.asarray(starts), rows.column(TIME).to_numpy(), rows.drop_columns([TIME]),
                           meta["t0"], meta["span"], meta["per_group"], meta["stamp"])

    def drop(self, view: str, version: int) -> None:
        meta = self._read_meta(view, version)
        self._meta(view, version).unlink(missing_ok=True)
        for name in (meta or {}).get("files", {}).values():
            (self.root / name).unlink(missing_ok=True)

    def _read_meta(self, view: str, version: int) -> dict | None:
        try:
            return json.loads(self._meta(view, version).read_text())
        except (OSError, ValueError):
            return None

    def retain(self, current: dict[str, int]) -> None:
        """Delete the indexes of views and versions the project no longer declares (view -> its version).

        An older version stays readable: a training set that asks for it builds its index again.
        """
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.name.startswith("."):
                continue  # a save in progress
            m = _FILE.match(path.name)
            if m is None or current.get(m["view"]) != int(m["version"]):
                path.unlink(missing_ok=True)


    def prune(self, current: dict[str, int], before: float) -> tuple[int, int]:
        """Delete index files last written before ``before`` (epoch seconds) that the current version of a
        declared view does not read: indexes of older versions (rebuilt for an older training set, and rebuilt
        again if one asks) and what an interrupted save left behind. Returns (files, bytes) deleted."""
        if not self.root.is_dir():
            return 0, 0
        live: set[str] = set()
        for view, version in current.items():
            meta = self._read_meta(view, version)
            if meta is not None:
                live |= {self._meta(view, version).name, *meta.get("files", {}).values()}
        files = freed = 0
        for path in self.root.iterdir():
            if path.name in live:
                continue
            try:
                st = path.stat()
                if st.st_mtime >= before or not path.is_file():
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            files += 1
            freed += st.st_size
        return files, freed


def _write_arrow(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        # One record batch: a mapped column is then one contiguous buffer, read without copying.
        writer.write_table(table.combine_chunks())


def _read_arrow(path: Path) -> pa.Table:
    # Memory-mapped: the pages come from the OS cache and count once however many builds read them.
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def current(con, files: IndexFiles, view: FeatureView, version: int, schema: Schema) -> SortedIndex:
    """The view version's index from ``files``, rebuilt and saved when the offline table has changed since."""
    index = files.load(view.name, version)
    if index is not None and index.stamp == _stamp(con, view, version):
        return index
    index = build(con, view, version, schema)
    files.save(view.name, version, index)
    return files.load(view.name, version) or index  # the mapped copy: the built arrays can be freed
