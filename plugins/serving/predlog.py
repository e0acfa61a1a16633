"""The prediction log: every answered request (or a configured sample) appended to DuckDB in batches.

The serving loop copies each request's rows into per-layout numpy buffers (a batch of requests in one copy); a
writer thread turns what piled up into one Arrow table and one INSERT every quarter second, so the
writer holds the GIL for a few C calls a batch, never a Python loop per request. One row per instance (a request
of n rows logs n).

Rows are stored as numbers: each row's input values and output values as two lists (FLOAT where that holds the
tensors exactly, as for float32 models, BIGINT for integers, else DOUBLE; see ``logcolumns``), plus a layout id
that says which feature or tensor each position belongs to (``serving.prediction_layouts``). Building each row's
JSON when writing made DuckDB's insert four times dearer (~10 us a row against ~2.5), and on a box where serving
shares the cores with everything else that CPU showed up in the serving tail. Readers see JSON keyed by feature
name, as before, through the view ``serving.prediction_log``, which builds it per layout when read. Requests that
do not fit a numeric layout (strings, ragged rows) are stored as JSON in ``inputs``/``outputs`` directly.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from appliance import become_background
from appliance.logthrottle import LogThrottle

from .logcolumns import (
    CASTS,
    STORAGE_TYPES,
    VALUE_COLUMNS,
    Columns,
    as_items,
    column,
    common_rows,
    fits,
    json_object,
    signature,
    start_columns,
    storage,
    strings,
)

log = logging.getLogger("appliance.serving.predlog")
# A store that refuses every write (a full disk) would otherwise log a traceback every quarter second.
throttled = LogThrottle(log)

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
#: While requests are being dropped, at most one alert in this many seconds.
DROP_ALERT_S = 60.0
#: Free bytes a checkpoint leaves untouched, beyond twice the WAL it moves into the data file.
CHECKPOINT_SPARE = 16 * 1024 * 1024


class PredictionLog:
    def __init__(self, store, *, flush_s: float = 0.25, max_pending: int = 200_000,
                 on_dropping: Callable[[int, str], None] | None = None, feedback=None):
        self.store = store
        # Labels to store with each flush (a ``feedback.FeedbackQueue``), after the predictions they label.
        self.feedback = feedback
        self._writing = threading.Lock()  # one flush at a time (the control API may ask for one too)
        # (requests dropped since the last call, why): told from the writer while the log drops requests, at most
        # once every DROP_ALERT_S, and again until it was told; serving itself never waits for the log.
        self.on_dropping = on_dropping
        self._drop_reason = ""
        self._dropped_told = 0
        self._told_at = -DROP_ALERT_S
        self.flush_s = flush_s
        self.max_pending = max_pending
        # The serving loop appends and the writer swaps these out, under one lock held for a few bytecodes.
        self._lock = threading.Lock()
        self._columns: dict[tuple, Columns | None] = {}  # None: a look that cannot be written as columns
        self._odd: list[tuple] = []
        self._pending = 0
        # Rows each look's last flush held: the next buffers start that big, so steady traffic never grows
        # (copies) them on the serving thread. Only the looks of the last flush are kept.
        self._sizes: dict[tuple, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.dropped = 0
        self.written = 0
        self._layouts: dict[str, int] = {}  # layout spec (JSON text) -> id; only the writer adds to it

    def stats(self) -> dict[str, int]:
        """Rows written, requests dropped (the writer was behind, or the store refused them) and requests
        waiting to be written."""
        return {"written_rows": self.written, "dropped_requests": self.dropped, "pending_requests": self._pending}

    def _tell_drops(self) -> None:
        dropped = self.dropped
        if dropped == self._dropped_told or self.on_dropping is None:
            return
        now = time.monotonic()
        if now - self._told_at < DROP_ALERT_S:
            return
        try:
            self.on_dropping(dropped - self._dropped_told, self._drop_reason)
        except Exception:  # the alert could not be raised (on a full disk, say): try again next cycle
            throttled.exception("reporting prediction log drops failed")
            return
        self._dropped_told, self._told_at = dropped, now

    def _drop(self, requests: int, reason: str) -> None:
        with self._lock:
            self.dropped += requests
            self._drop_reason = reason

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
        n, rows = len(request_ids), common_rows(inputs, outputs)
        look = (deployment, model, version, shadow, id(feature_names), signature(inputs), signature(outputs))
        with self._lock:
            if self._pending + n > self.max_pending:
                # The writer is behind; serving must not slow down or grow without bound.
                self.dropped += n
                self._drop_reason = f"its writer is behind (more than {self.max_pending} requests waiting)"
                return
            columns = self._columns.get(look, False)
            if columns is False:
                columns = self._columns[look] = start_columns(deployment, model, version, shadow, inputs, outputs,
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

    def flush(self) -> int:
        """Write what is pending; returns the number of requests written."""
        with self._writing:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            columns, self._columns = self._columns, {}
            odd, self._odd = self._odd, []
            self._pending = 0
        written = {look: c for look, c in columns.items() if c is not None and c.rows}
        if written:  # a quiet quarter second keeps the sizes for the next burst
            self._sizes = {look: max(256, c.rows + c.rows // 4) for look, c in written.items()}
        groups = list(written.values())
        if not groups and not odd:
            return 0
        cur = self.store.cursor()
        written = sum(self._write(cur, self._write_columns, group, group.requests()) for group in groups)
        return written + (self._write(cur, self._write_rows, odd, len(odd)) if odd else 0)

    def _write(self, cur, write, what, requests: int) -> int:
        """``write(cur, what)``, one insert of ``requests`` requests; if the store refuses it (a full disk, say),
        they are counted as dropped, with the reason, rather than lost without a trace."""
        try:
            write(cur, what)
        except Exception as exc:
            throttled.exception("writing the prediction log failed")
            self._drop(requests, _refusal(exc))
            return 0
        return requests

    def _insert(self, cur, table, columns: str, select: str, params: list | None = None) -> None:
        # DuckDB reads the Arrow table through its Python replacement scan (the local variable named in the
        # query): register/unregister are two catalog changes, ~0.6 ms of a ~1.2 ms fixed cost per insert.
        prediction_log_batch = table  # noqa: F841 (read by name by DuckDB)
        cur.execute(f"insert into serving.predictions ({columns}) select {select} from prediction_log_batch", params)
        self.written += table.num_rows

    def _write_columns(self, cur, group: Columns) -> None:
        import pyarrow as pa

        n, total = group.requests(), group.rows
        counts = group.counts[:n]
        if not fits(group):
            return self._write_rows(cur, as_items(group))
        single = total == n  # one row a request, the usual case: nothing to repeat

        def per_row(values: np.ndarray) -> np.ndarray:
            return values if single else np.repeat(values, counts)

        request_ids = strings(group.request_ids)
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
            kind = storage(layout)
            for name, ndim, width, dtype in layout:
                cast = CASTS.get(np.dtype(dtype).kind)
                features = group.names.get(name) if side == "inputs" else None
                if ndim == 2 and features and len(features) == width:  # one key per feature
                    entries += [[str(f), offset + j, 0, cast] for j, f in enumerate(features)]
                else:  # the tensor's name: a list per row (2-D) or a number (1-D)
                    entries.append([name, offset, width if ndim == 2 else 0, cast])
                blocks.append(tensors[name][:total].reshape(total, -1))
                offset += width if ndim == 2 else 1
            values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
            values = values.astype(STORAGE_TYPES[kind], copy=False)
            cols[side] = pa.FixedSizeListArray.from_arrays(column(values.reshape(-1)), offset)
            spec[side] = entries
            spec["columns"][side] = VALUE_COLUMNS[side][kind]
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
                if values not in VALUE_COLUMNS[side].values():  # read back from the store: only our own
                    raise ValueError(f"unknown column {values!r} in a prediction log layout")
                cases[side].append(f"when layout = {int(layout)} then {json_object(spec[side], values)}")
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
                written = self._cycle()
                unsaved += written
                if written:
                    last_write = time.monotonic()
                elif unsaved and time.monotonic() - last_write >= QUIET_S:
                    # Traffic paused: move the log from the WAL into the data file now, rather than when the
                    # WAL's size trips DuckDB's own checkpoint in the middle of a busy spell.
                    unsaved = 0 if self._checkpoint() else unsaved
            except Exception:
                throttled.exception("writing the prediction log failed")
            self._tell_drops()
        self._cycle()

    def _cycle(self) -> int:
        """The predictions pending, then the feedback posted before them; returns the requests written."""
        labels = self.feedback.take() if self.feedback is not None else []
        try:
            return self.flush()
        finally:  # whatever became of the flush, each poster hears back
            if labels:
                with self._writing:
                    self.feedback.write(self.store.cursor(), labels)

    def _checkpoint(self) -> bool:
        """Checkpoint the store; False when another transaction is running (DuckDB then refuses; try later) or
        when the disk may not hold it: a checkpoint that fails for want of space invalidates the whole store
        until the daemon restarts, where a refused insert only costs that insert."""
        import duckdb

        path = Path(self.store.path)
        try:
            wal = path.with_name(path.name + ".wal").stat().st_size
            if shutil.disk_usage(path.parent).free < 2 * wal + CHECKPOINT_SPARE:
                return False
        except OSError:
            pass  # no WAL: nothing much to move
        try:
            self.store.cursor().execute("checkpoint").fetchall()
        except duckdb.Error:
            return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _refusal(exc: Exception) -> str:
    """Why the store refused a write, in a few words for the alert (DuckDB's own message names files)."""
    text = str(exc)
    if "No space left on device" in text:
        return "the disk holding the store is full (No space left on device)"
    return f"the store refused the write ({text[:300]})"


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
