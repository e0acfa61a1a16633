"""How the prediction log holds requests as numbers: buffers the serving loop fills, the value column each side
of a layout is stored in, and the SQL that reads a stored row back as JSON.

Requests that look alike (deployment, model version, tensor names, dtypes and row widths) share one ``Columns``;
``predlog`` turns each into one Arrow table and one insert.
"""

from __future__ import annotations

import time

import numpy as np

# How a stored number goes back to its tensor's type in the JSON.
CASTS = {"i": "bigint", "u": "ubigint", "b": "boolean"}
# Tensors a FLOAT holds exactly: stored as FLOAT lists (half the bytes, in the WAL and on disk).
_FLOAT_EXACT = {np.dtype(t) for t in ("float32", "float16", "int8", "uint8", "int16", "uint16", "bool")}
# Where each side's values live: FLOAT when all of its tensors fit one exactly, BIGINT when all are integers or
# booleans (hashed ids use all 64 bits), else DOUBLE. A DOUBLE holds integers up to 2**53 exactly: a group with
# a larger one on a mixed side is written as JSON rows instead, so no logged value ever loses digits.
VALUE_COLUMNS = {"inputs": {"double": "input_values", "float": "input_floats", "int": "input_ints"},
               "outputs": {"double": "output_values", "float": "output_floats", "int": "output_ints"}}
# The numpy type each value column is filled from.
STORAGE_TYPES = {"float": np.float32, "double": np.float64, "int": np.int64}
_EXACT_IN_DOUBLE = 2**53


class Columns:
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


def start_columns(deployment, model, version, shadow, inputs: dict, outputs: dict, names,
                  capacity: int = 256) -> Columns | None:
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
    return Columns(deployment, model, version, shadow, names, layouts[0], layouts[1], capacity)


def storage(layout) -> str:
    """Which value column a side's tensors go to (see ``VALUE_COLUMNS``)."""
    dtypes = [np.dtype(dtype) for *_, dtype in layout]
    if all(d in _FLOAT_EXACT for d in dtypes):
        return "float"
    if all(d.kind in "iub" for d in dtypes):
        return "int"
    return "double"


def fits(group: Columns) -> bool:
    """Whether every value of the group survives its side's value column: integers beyond 2**53 on a side
    stored as DOUBLE, or unsigned ones beyond BIGINT, do not (checked only for 64-bit integer tensors)."""
    for layout, tensors in ((group.in_layout, group.inputs), (group.out_layout, group.outputs)):
        kind = storage(layout)
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


def as_items(group: Columns) -> list[tuple]:
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


def signature(tensors: dict):
    """Names, dtypes and row shapes: what requests must share to be written as the same columns. Runs on every
    logged request, so the usual single tensor skips building a tuple of tuples."""
    if len(tensors) == 1:
        for name, arr in tensors.items():
            return name, arr.dtype, arr.shape[1:]
    return tuple([(name, arr.dtype, arr.shape[1:]) for name, arr in tensors.items()])


def common_rows(inputs: dict, outputs: dict) -> int:
    """The number of rows every tensor of the request has, or 0 when they disagree (or have none)."""
    rows = -1
    for tensors in (inputs, outputs):
        for arr in tensors.values():
            if rows == -1:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                return 0
    return max(rows, 0)


def column(values: np.ndarray):
    """An Arrow column; non-finite floats become JSON null, as orjson writes them."""
    import pyarrow as pa

    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            return pa.array(values, mask=bad)
    return pa.array(values)


def strings(values: list[str], slice_rows: int = 1024):
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


def json_object(entries: list, values: str) -> str:
    """SQL building one row's JSON from its stored values: ``[key, offset, width, cast]`` per key, width 0 for a
    single number, else a list of ``width`` numbers (DuckDB lists count from 1)."""
    parts = []
    for key, offset, width, cast in entries:
        offset, width = int(offset), int(width)
        expr = f"{values}[{offset + 1}]" if width == 0 else f"{values}[{offset + 1}:{offset + width}]"
        if cast:
            if cast not in CASTS.values():  # the spec is read back from the store: only our own casts
                raise ValueError(f"unknown cast {cast!r} in a prediction log layout")
            expr = f"({expr})::{cast}{'[]' if width else ''}"
        parts += [_quote(key), expr]
    return f"json_object({', '.join(parts)})"


def _quote(name: str) -> str:
    return "'" + str(name).replace("'", "''") + "'"
