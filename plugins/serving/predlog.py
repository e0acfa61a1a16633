"""The prediction log: every answered request (or a configured sample) appended to DuckDB in batches.

The serving loop appends each request's arrays to per-layout column lists (a few list appends); a writer thread
turns each batch into one Arrow table and one INSERT, so logging costs the hot path almost nothing and the writer
holds the GIL for a few C calls a batch, never a Python loop per request. One row per instance (a request of n rows
logs n), with inputs and outputs as JSON keyed by feature name, which is what drift monitors read.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np
import orjson

log = logging.getLogger("appliance.serving.predlog")

SCHEMA = """
create schema if not exists serving;
create table if not exists serving.predictions (
    deployment varchar, model varchar, version integer, request_id varchar, row_index integer,
    ts timestamp, latency_us integer, shadow boolean, inputs json, outputs json
);
create table if not exists serving.feedback (
    request_id varchar, row_index integer, label double, ts timestamp
);
"""


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

    def add(self, request_id, ts, latency_s, inputs, outputs, rows) -> None:
        start, end = self.rows, self.rows + rows
        if end > self.capacity:
            self._grow(end)
        k = len(self.request_ids)
        self.request_ids.append(request_id)
        self.times[k] = ts
        self.latencies[k] = latency_s
        self.counts[k] = rows
        self._copy(inputs, outputs, start, end)

    def add_many(self, request_ids, ts, latencies, counts, inputs, outputs, rows) -> None:
        """Requests answered together: their rows stacked in ``inputs`` and ``outputs``, in request order."""
        start, end = self.rows, self.rows + rows
        if end > self.capacity:
            self._grow(end)
        k, n = len(self.request_ids), len(request_ids)
        self.request_ids.extend(request_ids)
        self.times[k:k + n] = ts
        self.latencies[k:k + n] = latencies
        self.counts[k:k + n] = counts
        self._copy(inputs, outputs, start, end)

    def _copy(self, inputs, outputs, start, end) -> None:
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
    def __init__(self, store, *, flush_s: float = 0.5, max_pending: int = 200_000):
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        # The serving loop appends and the writer swaps these out, under one lock held for a few bytecodes.
        self._lock = threading.Lock()
        self._columns: dict[tuple, _Columns | None] = {}  # None: a look that cannot be written as columns
        self._odd: list[tuple] = []
        self._pending = 0
        self._feedback: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        cur = self.store.cursor()
        cur.execute(SCHEMA)
        self._thread.start()

    def append(self, deployment: str, model: str, version: int, request_id: str, latency_s: float, shadow: bool,
               inputs: dict, outputs: dict, feature_names: dict[str, list[str]] | None) -> None:
        look = (deployment, model, version, shadow, id(feature_names), _signature(inputs), _signature(outputs))
        with self._lock:
            if self._pending >= self.max_pending:
                self.dropped += 1  # the writer is behind; serving must not slow down or grow without bound
                return
            self._pending += 1
            columns = self._columns.get(look, False)
            if columns is False:
                columns = self._columns[look] = _start_columns(deployment, model, version, shadow, inputs, outputs,
                                                               feature_names)
            rows = _common_rows(inputs, outputs) if columns is not None else 0
            if rows:
                columns.add(request_id, time.time(), latency_s, inputs, outputs, rows)
            else:
                self._odd.append((deployment, model, version, request_id, time.time(), latency_s, shadow, inputs,
                                  outputs, feature_names))

    def append_batch(self, deployment: str, model: str, version: int, request_ids: list[str],
                     latencies_s: list[float], counts: list[int], inputs: dict, outputs: dict,
                     feature_names: dict[str, list[str]] | None) -> None:
        """Requests answered as one batch, their rows stacked in ``inputs`` and ``outputs`` in request order
        (``counts`` rows each): one append for the lot."""
        n, total = len(request_ids), sum(counts)
        look = (deployment, model, version, False, id(feature_names), _signature(inputs), _signature(outputs))
        with self._lock:
            columns = self._columns.get(look, False)
            if columns is False:
                columns = self._columns[look] = _start_columns(deployment, model, version, False, inputs, outputs,
                                                               feature_names)
            if columns is not None and _common_rows(inputs, outputs) == total:
                if self._pending + n > self.max_pending:
                    self.dropped += n
                    return
                self._pending += n
                columns.add_many(request_ids, time.time(), latencies_s, counts, inputs, outputs, total)
                return
        # Tensors that cannot be columns, or outputs that do not line up with the rows: each request alone.
        start = 0
        for rid, latency, rows in zip(request_ids, latencies_s, counts, strict=True):
            cut = slice(start, start + rows)
            start += rows
            self.append(deployment, model, version, rid, latency, False, {k: v[cut] for k, v in inputs.items()},
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
        groups = [c for c in columns.values() if c is not None and c.rows]
        if not groups and not odd:
            return 0
        cur = self.store.cursor()
        for group in groups:
            self._write_columns(cur, group)
        if odd:
            self._write_rows(cur, odd)
        return sum(g.requests() for g in groups) + len(odd)

    def _insert(self, cur, table, inputs_sql: str = "inputs", outputs_sql: str = "outputs",
                constants: tuple | None = None) -> None:
        """Insert an Arrow table; ``constants`` (deployment, model, version, shadow) when the table leaves them
        out because every row shares them."""
        cur.register("_predlog_batch", table)
        try:
            if constants is None:
                cur.execute("insert into serving.predictions select deployment, model, version, request_id, "
                            f"row_index, ts, latency_us, shadow, {inputs_sql}, {outputs_sql} from _predlog_batch")
            else:
                cur.execute("insert into serving.predictions select ?, ?, ?, request_id, row_index, ts, latency_us, "
                            f"?, {inputs_sql}, {outputs_sql} from _predlog_batch", list(constants))
        finally:
            cur.unregister("_predlog_batch")
        self.written += table.num_rows

    def _write_columns(self, cur, group: _Columns) -> None:
        import pyarrow as pa

        n, total = group.requests(), group.rows
        counts = group.counts[:n]
        single = total == n  # one row a request, the usual case: nothing to repeat

        def per_row(values: np.ndarray) -> np.ndarray:
            return values if single else np.repeat(values, counts)

        request_ids = pa.array(group.request_ids, pa.string())
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
        json_parts: dict[str, list[str]] = {"in": [], "out": []}
        for side, layout, tensors in (("in", group.in_layout, group.inputs), ("out", group.out_layout, group.outputs)):
            for t, (name, ndim, width, _) in enumerate(layout):
                arr = tensors[name][:total]
                features = group.names.get(name) if side == "in" else None
                if ndim == 2 and features and len(features) == width:
                    for j, feature in enumerate(features):
                        col = f"{side}_{t}_{j}"
                        cols[col] = _column(arr[:, j])
                        json_parts[side] += [_quote(feature), col]
                else:
                    col = f"{side}_{t}"
                    if ndim == 2:  # each row's values as a JSON list
                        flat = _column(arr.reshape(-1))
                        cols[col] = pa.FixedSizeListArray.from_arrays(flat, width)
                    else:
                        cols[col] = _column(arr)
                    json_parts[side] += [_quote(name), col]
        table = pa.table(cols)
        self._insert(cur, table, f"json_object({', '.join(json_parts['in'])})",
                     f"json_object({', '.join(json_parts['out'])})",
                     (group.deployment, group.model, group.version, group.shadow))

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
        self._insert(cur, table)

    def _run(self) -> None:
        unsaved = 0  # requests written since the last checkpoint
        while not self._stop.wait(self.flush_s):
            try:
                written = self.flush()
                unsaved += written
                if not written and unsaved:
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


def _start_columns(deployment, model, version, shadow, inputs: dict, outputs: dict, names) -> _Columns | None:
    """Columns for requests that look like this one, or None when they cannot be written as columns: every
    tensor must be numeric, 1-D or 2-D."""
    if not inputs or not outputs:
        return None
    layouts = []
    for tensors in (inputs, outputs):
        layout = []
        for name, arr in tensors.items():
            if arr.ndim not in (1, 2) or arr.dtype.kind not in "fiub":
                return None
            layout.append((name, arr.ndim, arr.shape[1] if arr.ndim == 2 else 0, arr.dtype.str))
        layouts.append(tuple(layout))
    return _Columns(deployment, model, version, shadow, names, layouts[0], layouts[1])


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


def _quote(name: str) -> str:
    return "'" + str(name).replace("'", "''") + "'"
