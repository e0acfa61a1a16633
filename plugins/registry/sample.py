"""A sample of rows registered with a model: checked against its signature, run for parity and latency, kept as
the reference drift monitors compare live traffic with.

A sample is Parquet or JSON rows (a list of objects, or one object per line). Its columns are read by name:

- a column named after a model input holds that input's value for each row (a number, a string or a list);
- when one two-dimensional input is left unnamed, the remaining columns, in order, are its features (their
  names become the signature's feature names, so the prediction log and drift reports use them);
- a column named after a model output holds the expected answer (the training framework's own output), and
  parity is checked against it; without one, each row is run alone and compared with the same row in a batch,
  which is what dynamic batching relies on.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from appliance import BadRequest

MAX_ROWS = 100_000
PARITY_ROWS = 32  # rows run alone when the sample carries no expected outputs
LATENCY_CALLS, LATENCY_BUDGET_S = 200, 1.0
NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
               "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
               "UINT64": np.uint64, "BOOL": np.bool_, "BYTES": object}


@dataclass
class Bound:
    """A sample read against a signature: what to feed, what to expect, and which columns are features."""

    rows: int
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, list[str]] = field(default_factory=dict)
    reference_columns: list[str] = field(default_factory=list)
    table: object = None
    fixed_batch: int | None = None  # a model without a free first dimension takes exactly this many rows


def read(data: bytes):
    """The sample as an Arrow table: Parquet (by its magic bytes) or JSON rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data[:4] == b"PAR1":
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            raise BadRequest(f"the sample looks like Parquet but cannot be read: {exc}", title="Bad sample") from None
    else:
        rows = _json_rows(data)
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise BadRequest(f"the sample's rows do not share column types: {exc}", title="Bad sample") from None
    if table.num_rows == 0:
        raise BadRequest("the sample has no rows", title="Bad sample")
    if table.num_rows > MAX_ROWS:
        raise BadRequest(f"the sample has {table.num_rows} rows; at most {MAX_ROWS} are taken", title="Bad sample")
    return table


def _json_rows(data: bytes) -> list[dict]:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadRequest("the sample is neither Parquet nor UTF-8 JSON rows", title="Bad sample") from None
    try:
        rows = json.loads(text)
    except ValueError:
        try:  # JSON lines: one object per line
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise BadRequest(f"the sample is neither Parquet nor JSON rows: {exc}", title="Bad sample") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("a JSON sample is a list of row objects (or one object per line), such as "
                         '[{"age": 41, "amount": 12.5}, ...]', title="Bad sample")
    return rows


def bind(table, signature: dict) -> Bound:
    """Map the sample's columns onto the model's inputs and outputs; every mismatch is named."""
    inputs = {t["name"]: t for t in signature["inputs"]}
    outputs = {t["name"]: t for t in signature["outputs"]}
    columns = table.column_names
    rest = [c for c in columns if c not in inputs and c not in outputs]
    unnamed = [n for n in inputs if n not in columns]
    bound = Bound(rows=table.num_rows, feeds={}, table=table)
    fixed = {t["shape"][0] for t in inputs.values() if t["shape"] and t["shape"][0] != -1}
    if fixed:
        bound.fixed_batch = min(fixed)
        if bound.rows < bound.fixed_batch:
            raise BadRequest(f"the model takes batches of exactly {bound.fixed_batch} rows; the sample has "
                             f"{bound.rows}", title="Sample does not match the model")
    if rest:
        if len(unnamed) != 1 or len(inputs[unnamed[0]]["shape"]) != 2:
            raise BadRequest(f"sample column(s) {_names(rest)} match no input or output of the model; it takes "
                             f"{_describe(inputs.values())} and answers {_describe(outputs.values())}",
                             title="Sample does not match the model")
        target = inputs[unnamed[0]]
        width = target["shape"][1]
        if width not in (-1, len(rest)):
            raise BadRequest(f"input {target['name']!r} takes {width} values per row, but the sample has "
                             f"{len(rest)} feature column(s): {_names(rest)}", title="Sample does not match the model")
        bound.features[target["name"]] = rest
        bound.feeds[target["name"]] = np.stack([_column(table, c, target, scalar=True) for c in rest], axis=1)
        unnamed = []
    if unnamed:
        raise BadRequest(f"the sample gives no values for input(s) {_describe(inputs[n] for n in unnamed)}: add a "
                         "column named after each input, or feature columns for a single two-dimensional input",
                         title="Sample does not match the model")
    for name in columns:
        if name in inputs:
            bound.feeds[name] = _column(table, name, inputs[name], scalar=len(inputs[name]["shape"]) == 1)
            _check_shape(bound.feeds[name], inputs[name])
        elif name in outputs:
            bound.expected[name] = _column(table, name, outputs[name], scalar=False)
    bound.reference_columns = [c for cols in bound.features.values() for c in cols] + \
        [n for n in columns if n in inputs and len(inputs[n]["shape"]) == 1]
    return bound


def _column(table, name: str, spec: dict, *, scalar: bool) -> np.ndarray:
    values = table.column(name).to_pylist()
    if any(v is None for v in values) and spec["dtype"] not in ("FP32", "FP64", "FP16"):
        raise BadRequest(f"sample column {name!r} has missing values; {_describe([spec])} cannot carry them "
                         "(only float inputs take a missing value, as NaN)", title="Bad sample")
    dtype = NUMPY_TYPES[spec["dtype"]]
    try:
        if dtype is object:
            arr = np.array([str(v) if not isinstance(v, list) else [str(x) for x in v] for v in values], dtype=object)
        else:
            arr = np.array([np.nan if v is None else v for v in values], dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"sample column {name!r} cannot be read as {spec['dtype']} for {spec['name']!r}: {exc}",
                         title="Sample does not match the model") from None
    if scalar and arr.ndim != 1:
        raise BadRequest(f"sample column {name!r} must hold one value per row, not lists",
                         title="Sample does not match the model")
    return arr


def _check_shape(arr: np.ndarray, spec: dict) -> None:
    want = spec["shape"]
    if arr.ndim != len(want) or any(w not in (-1, g) for w, g in zip(want[1:], arr.shape[1:], strict=False)):
        got = [-1, *arr.shape[1:]]
        raise BadRequest(f"sample column {spec['name']!r} has rows of shape {got[1:]}; the input takes shape "
                         f"{want} (first dimension: the rows)", title="Sample does not match the model")


def _describe(tensors) -> str:
    return ", ".join(f"{t['name']!r} ({t['dtype']} {t['shape']})" for t in tensors) or "nothing"


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


# ------------------------------------------------------------------------------------------------ checks


def session(model_bytes: bytes):
    """An onnxruntime session set up as serving sets one up; a model that does not load is refused."""
    import os

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, min(4, (os.cpu_count() or 2) // 2))
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"onnxruntime cannot load the model: {text}", title="Model does not load") from None


def _whole(sess, bound: Bound) -> dict[str, np.ndarray]:
    """Every row of the sample in one call, or in calls of the model's fixed batch (whole ones only)."""
    if bound.fixed_batch is None:
        return _run(sess, bound.feeds, slice(None))
    size = bound.fixed_batch
    parts = [_run(sess, bound.feeds, slice(i, i + size)) for i in range(0, bound.rows - size + 1, size)]
    return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}


def _run(sess, feeds: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    try:
        out = sess.run(names, {k: v[rows] for k, v in feeds.items()})
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"the model fails on the sample: {text}", title="Sample does not match the model") from None
    return dict(zip(names, out, strict=True))


def parity(sess, bound: Bound, tolerance: float) -> dict:
    """The largest difference between what this box's onnxruntime answers and the reference answer; refused
    beyond ``tolerance`` (a wrong export, or a model whose answer for a row depends on its batch)."""
    batch = _whole(sess, bound)
    if bound.expected:
        against = "the sample's expected outputs"
        pairs = [(n, batch[n], e[:len(batch[n])]) for n, e in bound.expected.items()]
    elif bound.fixed_batch is not None:  # no batching to check, and nothing to compare with
        return {"rows": bound.rows, "against": None, "max_abs_diff": None, "tolerance": tolerance, "outputs": {}}
    else:
        rows = min(bound.rows, PARITY_ROWS)
        alone = [_run(sess, bound.feeds, slice(i, i + 1)) for i in range(rows)]
        against = f"each of {rows} rows run alone"
        pairs = [(n, out[:rows], np.concatenate([a[n] for a in alone])) for n, out in batch.items()]
    worst, per_output = 0.0, {}
    for name, got, want in pairs:
        got, want = np.asarray(got), np.asarray(want)
        if got.size != want.size:
            raise BadRequest(f"expected output {name!r} has {want.size // max(len(want), 1)} value(s) per row; the "
                             f"model answers {got.size // max(len(got), 1)}", title="Sample does not match the model")
        if got.dtype == object or want.dtype == object:
            diff = float(np.sum(got.reshape(-1).astype(str) != want.reshape(-1).astype(str)))
        else:
            diff = float(np.max(np.abs(got.reshape(-1).astype(np.float64) - want.reshape(-1).astype(np.float64)),
                                initial=0.0))
        per_output[name] = diff
        worst = max(worst, diff) if not np.isnan(diff) else float("inf")
    result = {"rows": bound.rows, "against": against, "max_abs_diff": worst, "tolerance": tolerance,
              "outputs": per_output}
    if not worst <= tolerance:
        name = max(per_output, key=lambda k: per_output[k])
        raise BadRequest(f"parity check failed: output {name!r} differs from {against} by up to {worst:.3g} "
                         f"(tolerance {tolerance:g}); check the export, or pass a larger tolerance",
                         title="Parity check failed")
    return result


def latency(sess, bound: Bound) -> dict:
    """One-row latency (p50, p99; one fixed batch for a model that takes no other) over up to 200 calls or a
    second, and the time to answer the whole sample."""
    feeds, size = bound.feeds, bound.fixed_batch or 1
    calls = max(1, bound.rows // size)
    for i in range(3):
        _run(sess, feeds, slice(i % calls * size, i % calls * size + size))
    times = []
    deadline = time.perf_counter() + LATENCY_BUDGET_S
    while len(times) < LATENCY_CALLS and time.perf_counter() < deadline:
        i = len(times) % calls * size
        start = time.perf_counter()
        _run(sess, feeds, slice(i, i + size))
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    _whole(sess, bound)
    batch_s = time.perf_counter() - start
    times.sort()
    return {"calls": len(times), "p50_ms": round(statistics.median(times) * 1e3, 4),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3, 4),
            "batch_rows": bound.rows, "batch_ms": round(batch_s * 1e3, 4)}


def reference_parquet(bound: Bound) -> bytes | None:
    """The sample's feature columns as Parquet: the reference drift monitors compare the served inputs with."""
    import pyarrow.parquet as pq

    if not bound.reference_columns:
        return None
    buf = io.BytesIO()
    pq.write_table(bound.table.select(bound.reference_columns), buf)
    return buf.getvalue()
