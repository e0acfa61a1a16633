"""The prediction log: every answered request (or a configured sample) appended to DuckDB in batches.

The serving loop only appends a small tuple to a deque; a writer thread turns batches of them into one Arrow
table and one INSERT, so logging costs the hot path almost nothing. One row per instance (a request of n rows
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


class PredictionLog:
    def __init__(self, store, *, flush_s: float = 0.5, max_pending: int = 200_000):
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        self._q: collections.deque = collections.deque()
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
        if len(self._q) >= self.max_pending:
            self.dropped += 1  # the writer is behind; serving must not slow down or grow without bound
            return
        self._q.append((deployment, model, version, request_id, time.time(), latency_s, shadow, inputs, outputs,
                        feature_names))

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
        self._flush_feedback()
        items = []
        while self._q:
            items.append(self._q.popleft())
        if not items:
            return 0
        # Requests with the same tensor layout are written together, column-wise: numpy joins their rows and
        # DuckDB builds each row's JSON (json_object), so the GIL is held for a few numpy calls per group, not
        # ~30 us of Python per logged row (which capped the log near 30k rows/s and stalled the serving loop).
        groups: dict[tuple, list] = {}
        odd = []
        layouts: dict[tuple, tuple | None] = {}  # most requests look alike: check a look once, not per request
        for item in items:
            inputs, outputs = item[7], item[8]
            look = (item[0], item[1], item[2], item[6], id(item[9]),
                    tuple([(n, a.dtype, a.shape) for n, a in inputs.items()]),
                    tuple([(n, a.dtype, a.shape) for n, a in outputs.items()]))
            key = layouts[look] if look in layouts else layouts.setdefault(look, _layout(item))
            if key is None:
                odd.append(item)
            else:
                groups.setdefault(key, []).append(item)
        cur = self.store.cursor()
        for key, group in groups.items():
            self._write_columns(cur, key, group)
            time.sleep(0)  # between groups, hand the GIL back to the serving loop
        if odd:
            self._write_rows(cur, odd)
        return len(items)

    def _insert(self, cur, table, inputs_sql: str = "inputs", outputs_sql: str = "outputs") -> None:
        cur.register("_predlog_batch", table)
        try:
            cur.execute("insert into serving.predictions select deployment, model, version, request_id, row_index, "
                        f"ts, latency_us, shadow, {inputs_sql}, {outputs_sql} from _predlog_batch")
        finally:
            cur.unregister("_predlog_batch")
        self.written += table.num_rows

    def _write_columns(self, cur, key: tuple, group: list) -> None:
        import pyarrow as pa

        in_layout, out_layout = key[4], key[5]
        counts = np.array([next(iter(it[7].values())).shape[0] for it in group])
        total = int(counts.sum())
        starts = np.repeat(np.cumsum(counts) - counts, counts)

        def per_row(field: int, dtype, scale: float = 1.0):
            """One request-level field, repeated for each of the request's rows."""
            values = np.array([it[field] for it in group], dtype=dtype)
            if scale != 1.0:
                values = (values * scale).astype(np.int64)
            return np.repeat(values, counts)

        cols: dict[str, pa.Array] = {
            "deployment": pa.array(per_row(0, object), pa.string()),
            "model": pa.array(per_row(1, object), pa.string()),
            "version": pa.array(per_row(2, np.int64)),
            "request_id": pa.array(per_row(3, object), pa.string()),
            "row_index": pa.array(np.arange(total) - starts),
            "ts": pa.array(per_row(4, np.float64, 1e6)).cast(pa.timestamp("us")),
            "latency_us": pa.array(per_row(5, np.float64, 1e6)),
            "shadow": pa.array(per_row(6, bool)),
        }
        names = group[0][9] or {}
        json_parts: dict[str, list[str]] = {"in": [], "out": []}
        for side, layout, index in (("in", in_layout, 7), ("out", out_layout, 8)):
            for t, (name, ndim, width, _) in enumerate(layout):
                arr = np.concatenate([it[index][name] for it in group])
                features = names.get(name) if side == "in" else None
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
                     f"json_object({', '.join(json_parts['out'])})")

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
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:
                log.exception("writing the prediction log failed")
        self.flush()

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


def _layout(item: tuple) -> tuple | None:
    """The key under which a logged request can be written column-wise with others, or None when it cannot:
    every tensor numeric, 1-D or 2-D, all with the same number of rows."""
    dep, model, version, _, _, _, shadow, inputs, outputs, names = item
    if not inputs or not outputs:
        return None
    rows = None
    layouts = []
    for tensors in (inputs, outputs):
        layout = []
        for name, arr in tensors.items():
            if arr.ndim not in (1, 2) or arr.dtype.kind not in "fiub":
                return None
            if rows is None:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                return None
            layout.append((name, arr.ndim, arr.shape[1] if arr.ndim == 2 else 0, arr.dtype.str))
        layouts.append(tuple(layout))
    if not rows:
        return None
    # The feature-name lists are the loaded model's own (one object per model), so their identity is a key.
    return dep, model, version, shadow, layouts[0], layouts[1], id(names)


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
