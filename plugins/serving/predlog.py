"""The prediction log: every answered request (or a configured sample) appended to DuckDB in batches.

The serving loop copies each request's rows into per-layout numpy buffers (a batch of requests in one copy); a
writer thread turns what piled up into one Arrow table and one INSERT every quarter second, so the
writer holds the GIL for a few C calls a batch, never a Python loop per request. One row per instance (a request
of n rows logs n).

Rows are stored as numbers: each row's input values and output values as two lists (FLOAT where that holds the
tensors exactly, as for float32 models, else DOUBLE), plus a layout id that says which feature or tensor each
position belongs to (``serving.prediction_layouts``). Building each row's JSON when writing made DuckDB's insert
four times dearer (~10 us a row against ~2.5), and on a box where serving shares the cores with everything else
that CPU showed up in the serving tail. Readers see JSON keyed by feature name, as before, through the view
``serving.prediction_log``, which builds it per layout when read. Requests that do not fit a numeric layout
(strings, ragged rows) are stored as JSON in ``inputs``/``outputs`` directly.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np
import orjson

from appliance import become_background

log = logging.getLogger("appliance.serving.predlog")

SCHEMA = """
create schema if not exists serving;
create table if not exists serving.predictions (
    deployment varchar, model varchar, version integer, request_id varchar, row_index integer,
    ts timestamp, latency_us integer, shadow boolean, inputs json, outputs json
);
alter table serving.predictions add column if not exists layout integer;
alter table serving.predictions add column if not exists input_values double[];
alter table serving.predictions add column if not exists output_values double[];
alter table serving.predictions add column if not exists input_floats float[];
alter table serving.predictions add column if not exists output_floats float[];
alter table serving.predictions add column if not exists input_ints bigint[];
alter table serving.predictions add column if not exists output_ints bigint[];
create table if not exists serving.prediction_layouts (layout integer primary key, spec varchar not null);
create table if not exists serving.feedback (
    request_id varchar, row_index integer, label double, ts timestamp
);
"""

#: What readers query: the log with each row's inputs and outputs as JSON keyed by feature or tensor name.
VIEW = "serving.prediction_log"
COLUMNS = "deployment, model, version, request_id, row_index, ts, latency_us, shadow"
#: Seconds without a request to log before the writer checkpoints the store.
QUIET_S = 1.0
# How a stored number goes back to its tensor's type in the JSON.
_CASTS = {"i": "bigint", "u": "ubigint", "b": "boolean"}
# Tensors a FLOAT holds exactly: stored as FLOAT lists (half the bytes, in the WAL and on disk).
_FLOAT_EXACT = {np.dtype(t) for t in ("float32", "float16", "int8", "uint8", "int16", "uint16", "bool")}
# Where each side's values live: FLOAT when all of its tensors fit one exactly, BIGINT when all are integers or
# booleans (hashed ids use all 64 bits), else DOUBLE. A DOUBLE holds integers up to 2**53 exactly: a group with
# a larger one on a mixed side is written as JSON rows instead, so no logged value ever loses digits.
_VALUE_COLUMNS = {"inputs": {"double": "input_values", "float": "input_floats", "int": "input_ints"},
                  "outputs": {"double": "output_values", "float": "output_floats", "int": "output_ints"}}
_EXACT_IN_DOUBLE = 2**53


class _Columns:
    """Logged requests that look alike (deployment, model version, tensor names, dtypes and row widths), copied
    into growing numpy buffers as they arrive: the request's own arrays are freed with its answer, and writing a
    batch is a few numpy and Arrow calls with no Python loop per request. Both matter because the writer and
    the serving loop share the GIL: holding ten thousand requests' arrays until the flush made that flush free
    them all at once (and made the cycle collector walk them meanwhile), stalling answers for milliseconds;
    every millisecond of Python the writer runs is a millisecond the loop waits."""

    __slots__ = ("deployment", "model", "version", "shadow", "names", "in_layout", "out_layout", "request_ids",
                 "times", "latencies", "counts", "inputs", "outputs", "rows", "capacity")

    def __init__(self, deployment, model, version, shadow, names, in_layout, out_layout, capacity: int = 256):
        self.deployment, self.model, self.version, self.shadow = deployment, model, version, shadow
        self.names = names or {}
        self.in_layout, self.out_layout = in_layout, out_layout
        self.rows, self.capacity = 0, capacity
        self.request_ids: list[str] = []
        # Per request (a request has at least one row, so the row capacity bounds them too).
        self.times = np.empty(capacity, np.float64)
        self.latencies = np.empty(capacity, np.float64)
        self.counts = np.empty(capacity, np.int64)
        self.inputs = {name: _buffer(ndim, width, dtype, capacity) for name, ndim, width, dtype in in_layout}
        self.outputs = {name: _buffer(ndim, width, dtype, capacity) for name, ndim, width, dtype in out_layout}

    def add(self, request_ids, ts, latencies, counts, inputs, outputs, rows) -> None:
        """Requests answered together (or one alone): their rows stacked in ``inputs`` and ``outputs``, in
        request order, ``counts`` rows each."""
        start, end = self.rows, self.rows + rows
        if end > self.capacity:
            self._grow(end)
        k, n = len(self.request_ids), len(request_ids)
        self.request_ids.extend(request_ids)
        if n == 1:  # a request alone (most unbatched traffic): element stores cost a third of slice stores
            self.times[k], self.latencies[k], self.counts[k] = ts, latencies[0], counts[0]
        else:
            self.times[k:k + n] = ts
            self.latencies[k:k + n] = latencies
            self.counts[k:k + n] = counts
        for name, arr in inputs.items():
            self.inputs[name][start:end] = arr
        for name, arr in outputs.items():
            self.outputs[name][start:end] = arr
        self.rows = end

    def _grow(self, need: int) -> None:
        capacity = max(need, 2 * self.capacity)
        for attr in ("times", "latencies", "counts"):
            setattr(self, attr, _resized(getattr(self, attr), capacity))
        for buffers in (self.inputs, self.outputs):
            for name, buf in buffers.items():
                buffers[name] = _resized(buf, capacity)
        self.capacity = capacity

    def requests(self) -> int:
        return len(self.request_ids)


def _buffer(ndim: int, width: int, dtype: str, capacity: int) -> np.ndarray:
    return np.empty((capacity, width) if ndim == 2 else capacity, np.dtype(dtype))


def _resized(buf: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty((capacity, *buf.shape[1:]), buf.dtype)
    out[:len(buf)] = buf
    return out


class PredictionLog:
    def __init__(self, store, *, flush_s: float = 0.25, max_pending: int = 200_000):
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        # The serving loop appends and the writer swaps these out, under one lock held for a few bytecodes.
        self._lock = threading.Lock()
        self._columns: dict[tuple, _Columns | None] = {}  # None: a look that cannot be written as columns
        self._odd: list[tuple] = []
        self._pending = 0
        # Rows each look's last flush held: the next buffers start that big, so steady traffic never grows
        # (copies) them on the serving thread. Only the looks of the last flush are kept.
        self._sizes: dict[tuple, int] = {}
        self._feedback: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.dropped = 0
        self.written = 0
        self._layouts: dict[str, int] = {}  # layout spec (JSON text) -> id; only the writer adds to it

    def prepare(self) -> None:
        """Create the log's tables (adding the numeric columns to a log made before them) and its view."""
        cur = self.store.cursor()
        cur.execute(SCHEMA)
        self._layouts = dict(cur.execute("select spec, layout from serving.prediction_layouts").fetchall())
        self._create_view(cur)

    def start(self) -> None:
        self.prepare()
        self._thread.start()

    def append(self, deployment: str, model: str, version: int, request_id: str, latency_s: float, shadow: bool,
               inputs: dict, outputs: dict, feature_names: dict[str, list[str]] | None) -> None:
        self._add(deployment, model, version, shadow, (request_id,), (latency_s,), None, inputs, outputs,
                  feature_names)

    def append_batch(self, deployment: str, model: str, version: int, request_ids: list[str],
                     latencies_s: list[float], counts: list[int], inputs: dict, outputs: dict,
                     feature_names: dict[str, list[str]] | None) -> None:
        """Requests answered as one batch, their rows stacked in ``inputs`` and ``outputs`` in request order
        (``counts`` rows each): one append for the lot."""
        self._add(deployment, model, version, False, request_ids, latencies_s, counts, inputs, outputs,
                  feature_names)

    def _add(self, deployment, model, version, shadow, request_ids, latencies_s, counts, inputs, outputs,
             feature_names) -> None:
        """``counts`` None: one request, whose rows are its tensors' common first dimension."""
        n, rows = len(request_ids), _common_rows(inputs, outputs)
        look = (deployment, model, version, shadow, id(feature_names), _signature(inputs), _signature(outputs))
        with self._lock:
            if self._pending + n > self.max_pending:
                self.dropped += n  # the writer is behind; serving must not slow down or grow without bound
                return
            columns = self._columns.get(look, False)
            if columns is False:
                columns = self._columns[look] = _start_columns(deployment, model, version, shadow, inputs, outputs,
                                                               feature_names, self._sizes.get(look, 256))
            if columns is not None and rows and (counts is None or sum(counts) == rows):
                self._pending += n
                columns.add(request_ids, time.time(), latencies_s, (rows,) if counts is None else counts, inputs,
                            outputs, rows)
                return
            if counts is None:  # one request whose tensors cannot be columns (strings, ragged rows): a dict a row
                self._pending += 1
                self._odd.append((deployment, model, version, request_ids[0], time.time(), latencies_s[0], shadow,
                                  inputs, outputs, feature_names))
                return
        # A batch whose stacked tensors cannot be columns: each request alone.
        start = 0
        for rid, latency, count in zip(request_ids, latencies_s, counts, strict=True):
            cut = slice(start, start + count)
            start += count
            self.append(deployment, model, version, rid, latency, shadow, {k: v[cut] for k, v in inputs.items()},
                        {k: v[cut] for k, v in outputs.items()}, feature_names)

    def feedback(self, request_id: str, labels: list[float]) -> None:
        """Ground truth for a logged request, one label per row, joined to the log by request id and row."""
        now = time.time()
        for i, label in enumerate(labels):
            self._feedback.append((request_id, i, float(label), now))

    def _flush_feedback(self) -> None:
        rows = []
        while self._feedback:
            rows.append(self._feedback.popleft())
        if rows:
            cur = self.store.cursor()
            cur.executemany("insert into serving.feedback values (?, ?, ?, to_timestamp(?))", rows)

    def flush(self) -> int:
        """Write what is pending; returns the number of requests written."""
        self._flush_feedback()
        with self._lock:
            columns, self._columns = self._columns, {}
            odd, self._odd = self._odd, []
            self._pending = 0
        if columns:  # a quiet quarter second keeps the sizes for the next burst
            self._sizes = {look: max(256, c.rows + c.rows // 4) for look, c in columns.items()
                           if c is not None and c.rows}
        groups = [c for c in columns.values() if c is not None and c.rows]
        if not groups and not odd:
            return 0
        cur = self.store.cursor()
        for group in groups:
            self._write_columns(cur, group)
        if odd:
            self._write_rows(cur, odd)
        return sum(g.requests() for g in groups) + len(odd)

    def _insert(self, cur, table, columns: str, select: str, params: list | None = None) -> None:
        # DuckDB reads the Arrow table through its Python replacement scan (the local variable named in the
        # query): register/unregister are two catalog changes, ~0.6 ms of a ~1.2 ms fixed cost per insert.
        prediction_log_batch = table  # noqa: F841 (read by name by DuckDB)
        cur.execute(f"insert into serving.predictions ({columns}) select {select} from prediction_log_batch", params)
        self.written += table.num_rows

    def _write_columns(self, cur, group: _Columns) -> None:
        import pyarrow as pa

        n, total = group.requests(), group.rows
        counts = group.counts[:n]
        if not _fits(group):
            return self._write_rows(cur, _as_items(group))
        single = total == n  # one row a request, the usual case: nothing to repeat

        def per_row(values: np.ndarray) -> np.ndarray:
            return values if single else np.repeat(values, counts)

        request_ids = _strings(group.request_ids)
        if not single:
            request_ids = request_ids.take(pa.array(np.repeat(np.arange(n), counts)))
        row_index = (np.zeros(total, np.int64) if single
                     else np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        cols: dict[str, pa.Array] = {
            "request_id": request_ids,
            "row_index": pa.array(row_index),
            "ts": pa.array(per_row((group.times[:n] * 1e6).astype(np.int64))).cast(pa.timestamp("us")),
            "latency_us": pa.array(per_row((group.latencies[:n] * 1e6).astype(np.int64))),
        }
        spec: dict[str, list | dict] = {"columns": {}}
        for side, layout, tensors in (("inputs", group.in_layout, group.inputs),
                                      ("outputs", group.out_layout, group.outputs)):
            entries, blocks, offset = [], [], 0
            kind = _storage(layout)
            for name, ndim, width, dtype in layout:
                cast = _CASTS.get(np.dtype(dtype).kind)
                features = group.names.get(name) if side == "inputs" else None
                if ndim == 2 and features and len(features) == width:  # one key per feature
                    entries += [[str(f), offset + j, 0, cast] for j, f in enumerate(features)]
                else:  # the tensor's name: a list per row (2-D) or a number (1-D)
                    entries.append([name, offset, width if ndim == 2 else 0, cast])
                blocks.append(tensors[name][:total].reshape(total, -1))
                offset += width if ndim == 2 else 1
            values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
            values = values.astype(_STORAGE_TYPES[kind], copy=False)
            cols[side] = pa.FixedSizeListArray.from_arrays(_column(values.reshape(-1)), offset)
            spec[side] = entries
            spec["columns"][side] = _VALUE_COLUMNS[side][kind]
        layout_id = self._layout(cur, orjson.dumps(spec).decode())
        self._insert(cur, pa.table(cols),
                     f"{COLUMNS}, layout, {spec['columns']['inputs']}, {spec['columns']['outputs']}",
                     "?, ?, ?, request_id, row_index, ts, latency_us, ?, ?, inputs, outputs",
                     [group.deployment, group.model, group.version, group.shadow, layout_id])

    def _layout(self, cur, spec: str) -> int:
        """The id of a layout, registered (and the view rebuilt to read it) the first time it is seen."""
        layout = self._layouts.get(spec)
        if layout is None:
            layout = max(self._layouts.values(), default=0) + 1
            cur.execute("insert into serving.prediction_layouts values (?, ?)", [layout, spec])
            self._layouts[spec] = layout
            self._create_view(cur)
        return layout

    def _create_view(self, cur) -> None:
        """``serving.prediction_log``: JSON rows as stored, numeric rows turned into JSON by their layout."""
        cases = {"inputs": [], "outputs": []}
        for spec_text, layout in sorted(self._layouts.items(), key=lambda kv: kv[1]):
            spec = orjson.loads(spec_text)
            for side in ("inputs", "outputs"):
                values = spec["columns"][side]
                if values not in _VALUE_COLUMNS[side].values():  # read back from the store: only our own
                    raise ValueError(f"unknown column {values!r} in a prediction log layout")
                cases[side].append(f"when layout = {int(layout)} then {_json_object(spec[side], values)}")
        select = ", ".join(f"case {' '.join(cases[side])} else {side} end as {side}" if cases[side] else side
                           for side in ("inputs", "outputs"))
        cur.execute(f"create or replace view {VIEW} as select {COLUMNS}, {select} from serving.predictions")

    def _write_rows(self, cur, items: list) -> None:
        """Requests whose tensors do not line up as columns (strings, scalars, ragged rows): one dict a row."""
        import pyarrow as pa

        cols: dict[str, list] = {k: [] for k in ("deployment", "model", "version", "request_id", "row_index", "ts",
                                                 "latency_us", "shadow", "inputs", "outputs")}
        for n, (dep, model, version, rid, ts, lat, shadow, inputs, outputs, names) in enumerate(items):
            if n % 64 == 63:
                time.sleep(0)  # hand the GIL back often: the serving loop must not wait behind the log
            in_rows = _rows(inputs, names)
            out_rows = _rows(outputs, None)
            for i, (ir, orow) in enumerate(zip(in_rows, out_rows, strict=False)):
                cols["deployment"].append(dep)
                cols["model"].append(model)
                cols["version"].append(version)
                cols["request_id"].append(rid)
                cols["row_index"].append(i)
                cols["ts"].append(ts)
                cols["latency_us"].append(int(lat * 1e6))
                cols["shadow"].append(shadow)
                cols["inputs"].append(orjson.dumps(ir).decode())
                cols["outputs"].append(orjson.dumps(orow).decode())
        table = pa.table({**{k: v for k, v in cols.items() if k != "ts"},
                          "ts": pa.array((np.array(cols["ts"]) * 1e6).astype(np.int64)).cast(pa.timestamp("us"))})
        self._insert(cur, table, f"{COLUMNS}, inputs, outputs", f"{COLUMNS}, inputs, outputs")

    def _run(self) -> None:
        # Background priority: the inserts run here and on DuckDB's (also background) workers, and on a busy box
        # they would otherwise take the core from the serving thread or its clients at the worst moment.
        become_background("prediction-log")
        # A write every quarter second: DuckDB's insert has a fixed cost (~1 ms of CPU, and ~130 KB of WAL for
        # the list columns) that smaller, more frequent writes paid over and over, filling the WAL toward a
        # checkpoint several times faster; larger ones make longer bursts of CPU beside serving.
        unsaved = 0  # requests written since the last checkpoint
        last_write = time.monotonic()
        while not self._stop.wait(self.flush_s):
            try:
                written = self.flush()
                unsaved += written
                if written:
                    last_write = time.monotonic()
                elif unsaved and time.monotonic() - last_write >= QUIET_S:
                    # Traffic paused: move the log from the WAL into the data file now, rather than when the
                    # WAL's size trips DuckDB's own checkpoint in the middle of a busy spell.
                    unsaved = 0 if self._checkpoint() else unsaved
            except Exception:
                log.exception("writing the prediction log failed")
        self.flush()

    def _checkpoint(self) -> bool:
        """Checkpoint the store; False when another transaction is running (DuckDB then refuses; try later)."""
        import duckdb

        try:
            self.store.cursor().execute("checkpoint").fetchall()
        except duckdb.Error:
            return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _rows(tensors: dict, names: dict[str, list[str]] | None) -> list[dict]:
    """Per-instance dicts: a [n, k] input with k feature names becomes n {name: value} rows."""
    if not tensors:
        return []
    n = min((a.shape[0] for a in tensors.values() if a.ndim), default=1)
    rows: list[dict] = [{} for _ in range(n)]
    for key, arr in tensors.items():
        if arr.ndim == 0:
            for r in rows:
                r[key] = arr.item()
            continue
        values = arr.tolist()
        cols = (names or {}).get(key)
        if arr.ndim == 2 and cols and len(cols) == arr.shape[1]:
            for r, v in zip(rows, values, strict=False):
                r.update(zip(cols, v, strict=True))
        else:
            for r, v in zip(rows, values, strict=False):
                r[key] = v
    return rows


def _start_columns(deployment, model, version, shadow, inputs: dict, outputs: dict, names,
                   capacity: int = 256) -> _Columns | None:
    """Columns for requests that look like this one, or None when they cannot be written as columns: every
    tensor must be numeric, 1-D or 2-D."""
    if not inputs or not outputs:
        return None
    layouts = []
    for tensors in (inputs, outputs):
        layout = []
        for name, arr in tensors.items():
            if arr.ndim not in (1, 2) or arr.dtype.kind not in "fiub" or (arr.ndim == 2 and not arr.shape[1]):
                return None
            layout.append((name, arr.ndim, arr.shape[1] if arr.ndim == 2 else 0, arr.dtype.str))
        layouts.append(tuple(layout))
    return _Columns(deployment, model, version, shadow, names, layouts[0], layouts[1], capacity)


_STORAGE_TYPES = {"float": np.float32, "double": np.float64, "int": np.int64}


def _storage(layout) -> str:
    """Which value column a side's tensors go to (see ``_VALUE_COLUMNS``)."""
    dtypes = [np.dtype(dtype) for *_, dtype in layout]
    if all(d in _FLOAT_EXACT for d in dtypes):
        return "float"
    if all(d.kind in "iub" for d in dtypes):
        return "int"
    return "double"


def _fits(group: _Columns) -> bool:
    """Whether every value of the group survives its side's value column: integers beyond 2**53 on a side
    stored as DOUBLE, or unsigned ones beyond BIGINT, do not (checked only for 64-bit integer tensors)."""
    for layout, tensors in ((group.in_layout, group.inputs), (group.out_layout, group.outputs)):
        kind = _storage(layout)
        for name, _, _, dtype in layout:
            dt = np.dtype(dtype)
            if dt.kind not in "iu" or dt.itemsize < 8 or kind == "int" and dt.kind == "i":
                continue
            values = tensors[name][:group.rows]
            if not values.size:
                continue
            top = int(values.max()) if dt.kind == "u" else max(int(values.max()), -int(values.min()))
            if top > (np.iinfo(np.int64).max if kind == "int" else _EXACT_IN_DOUBLE):
                return False
    return True


def _as_items(group: _Columns) -> list[tuple]:
    """The group's requests as the row-by-row writer takes them."""
    items, start = [], 0
    for k, rid in enumerate(group.request_ids):
        end = start + int(group.counts[k])
        items.append((group.deployment, group.model, group.version, rid, float(group.times[k]),
                      float(group.latencies[k]), group.shadow,
                      {name: buf[start:end] for name, buf in group.inputs.items()},
                      {name: buf[start:end] for name, buf in group.outputs.items()}, group.names))
        start = end
    return items


def _signature(tensors: dict):
    """Names, dtypes and row shapes: what requests must share to be written as the same columns. Runs on every
    logged request, so the usual single tensor skips building a tuple of tuples."""
    if len(tensors) == 1:
        for name, arr in tensors.items():
            return name, arr.dtype, arr.shape[1:]
    return tuple([(name, arr.dtype, arr.shape[1:]) for name, arr in tensors.items()])


def _common_rows(inputs: dict, outputs: dict) -> int:
    """The number of rows every tensor of the request has, or 0 when they disagree (or have none)."""
    rows = -1
    for tensors in (inputs, outputs):
        for arr in tensors.values():
            if rows == -1:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                return 0
    return max(rows, 0)


def _column(values: np.ndarray):
    """An Arrow column; non-finite floats become JSON null, as orjson writes them."""
    import pyarrow as pa

    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            return pa.array(values, mask=bad)
    return pa.array(values)


def _strings(values: list[str], slice_rows: int = 1024):
    """Python strings as an Arrow array, converted a slice at a time with the GIL let go between slices:
    converting a quarter second's 8k request ids in one call held it ~0.5 ms, a stall for every request the
    serving loop had in flight."""
    import pyarrow as pa

    if len(values) <= slice_rows:
        return pa.array(values, pa.string())
    chunks = []
    for start in range(0, len(values), slice_rows):
        chunks.append(pa.array(values[start:start + slice_rows], pa.string()))
        time.sleep(0)  # releases the GIL: a waiting serving loop runs first
    return pa.concat_arrays(chunks)


def _json_object(entries: list, values: str) -> str:
    """SQL building one row's JSON from its stored values: ``[key, offset, width, cast]`` per key, width 0 for a
    single number, else a list of ``width`` numbers (DuckDB lists count from 1)."""
    parts = []
    for key, offset, width, cast in entries:
        offset, width = int(offset), int(width)
        expr = f"{values}[{offset + 1}]" if width == 0 else f"{values}[{offset + 1}:{offset + width}]"
        if cast:
            if cast not in _CASTS.values():  # the spec is read back from the store: only our own casts
                raise ValueError(f"unknown cast {cast!r} in a prediction log layout")
            expr = f"({expr})::{cast}{'[]' if width else ''}"
        parts += [_quote(key), expr]
    return f"json_object({', '.join(parts)})"


def _quote(name: str) -> str:
    return "'" + str(name).replace("'", "''") + "'"
