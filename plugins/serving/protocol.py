"""The Open Inference Protocol v2 (KServe/Triton) on the wire: JSON tensors and Triton's binary extension.

Parsing checks everything a request declares before allocating anything: a declared shape is multiplied out
and compared with the data it came with (JSON element count, or binary byte size) first, so a tiny body that
claims a huge tensor costs nothing. Every refusal names the input and says what was expected and what came.
"""

from __future__ import annotations

import array
import math
import struct
from dataclasses import dataclass

import numpy as np
import orjson

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
NUMPY_TO_OIP = {v: k for k, v in DTYPES.items()}
# JSON numbers become float tensors through the standard library (struct for the usual small request, typed
# arrays for the rest): one C loop, a fraction of numpy's conversion, which first inspects every element to
# discover a dtype it is then told anyway.
_ARRAY_CODES = {"FP32": "f", "FP64": "d"}
ORT_TO_OIP = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16", "tensor(int8)": "INT8",
              "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
              "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL", "tensor(string)": "BYTES"}

#: Elements one request may carry, whatever it declares (64M floats = 256 MB).
MAX_ELEMENTS = 1 << 26


class ProtocolError(Exception):
    """A request the server refuses: HTTP status and a message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {list(self.shape)})"

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class InferRequest:
    id: str | None
    arrays: dict[str, np.ndarray]
    binary_output: bool
    output_binary: dict[str, bool]
    requested_outputs: list[str] | None


JSON_HEADERS = ((b"content-type", b"application/json"),)  # shared by every JSON answer


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise ProtocolError(400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
    if not 0 < n <= len(body):
        raise ProtocolError(400, f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def parse_json(data: bytes) -> dict:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "recursion" in msg.lower() or "depth" in msg.lower():
            raise ProtocolError(400, "request JSON is nested too deeply") from None
        hint = "; NaN and Infinity are not JSON" if b"NaN" in data or b"Infinity" in data else ""
        raise ProtocolError(400, f"request body is not valid JSON ({msg}){hint}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(400, f"request body must be a JSON object, got {type(obj).__name__}")
    return obj


def _shape(spec_in: dict, name: str) -> tuple[int, ...]:
    shape = spec_in.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ProtocolError(400, f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def _flatten(data, depth: int, name: str) -> list:
    """Row-major flatten of nested JSON lists, no deeper than the tensor's rank."""
    if not isinstance(data, list):
        return [data]
    if depth <= 0:
        raise ProtocolError(400, f"input '{name}': data is nested deeper than its shape")
    if data and isinstance(data[0], list):
        out: list = []
        for item in data:
            out.extend(_flatten(item, depth - 1, name))
        return out
    return data


_SIMPLE_REQUEST = ({"inputs"}, {"inputs", "id"})
_SIMPLE_INPUT = {"name", "datatype", "shape", "data"}


def _parse_simple(header: dict, specs: dict[str, TensorSpec], max_batch: int) -> InferRequest | None:
    """The request most clients send, read in one pass: one input, JSON numbers as a flat list, no parameters
    or output choices. None for anything else, or anything wrong, which ``parse_inputs`` then reads (and
    refuses) in full; so this path accepts exactly what that one would, only faster."""
    if header.keys() not in _SIMPLE_REQUEST or len(specs) != 1:
        return None
    inputs = header["inputs"]
    if type(inputs) is not list or len(inputs) != 1:
        return None
    item = inputs[0]
    if type(item) is not dict or item.keys() != _SIMPLE_INPUT:
        return None
    spec = specs.get(item["name"])
    code = _ARRAY_CODES.get(item["datatype"])
    shape, data = item["shape"], item["data"]
    if spec is None or spec.datatype != item["datatype"] or code is None or type(shape) is not list \
            or len(shape) != len(spec.shape) or type(data) is not list:
        return None
    count = 1
    for e, g in zip(spec.shape, shape):  # noqa: B905 (lengths checked above)
        if type(g) is not int or g < 0 or (e != g and e != -1):
            return None
        count *= g
    if count != len(data) or count > MAX_ELEMENTS or (shape and spec.shape[0] == -1 and shape[0] > max_batch):
        return None
    arr = _packed(data, code, DTYPES[spec.datatype])  # None for a nested list, a string, a null, a value too big
    if arr is None:
        return None
    rid = header.get("id")
    # Positional: keyword construction of the dataclass costs twice as much, on every request.
    return InferRequest(str(rid) if rid is not None else None, {spec.name: arr.reshape(shape)}, False, {}, None)


def parse_inputs(header: dict, binary: memoryview, specs: dict[str, TensorSpec],
                 max_batch: int, nullable: frozenset[str] = frozenset()) -> InferRequest:
    """The request's tensors, checked against ``specs``. Inputs named in ``nullable`` (the model imputes them:
    its signature says so) take a JSON null, or NaN in a binary FP32/FP64 tensor, as a missing value: NaN in a
    float tensor, an empty string (the unknown category) in a BYTES one. Anywhere else a missing value is refused,
    naming the input and the index."""
    if not binary and (simple := _parse_simple(header, specs, max_batch)) is not None:
        return simple
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(400, "request needs a non-empty 'inputs' list")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError(400, "'parameters' must be an object")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in inputs:
        if not isinstance(item, dict):
            raise ProtocolError(400, f"each input must be an object, got {type(item).__name__}")
        name = item.get("name")
        if not isinstance(name, str):
            raise ProtocolError(400, "an input has no 'name'")
        spec = specs.get(name)
        if spec is None:
            expected = ", ".join(s.describe() for s in specs.values())
            raise ProtocolError(400, f"unknown input '{name}'; the model takes: {expected}")
        if name in arrays:
            raise ProtocolError(400, f"input '{name}' is given twice")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            raise ProtocolError(400, f"input '{name}': expected datatype {spec.datatype}, got {datatype!r}")
        # The shape, checked in one pass (this runs on every request): non-negative integers, as declared.
        shape = item.get("shape")
        if type(shape) is not list or len(shape) != len(spec.shape):
            raise ProtocolError(400, f"input '{name}': expected shape {list(spec.shape)}, got "
                                     f"{list(_shape(item, name))}")
        for e, g in zip(spec.shape, shape, strict=True):
            if type(g) is not int or g < 0:
                _shape(item, name)  # raises, naming what is wrong
            if e != g and e != -1:
                _shape(item, name)  # a bad value further on is reported first, as for any other shape
                raise ProtocolError(400, f"input '{name}': expected shape {list(spec.shape)}, got {shape}")
        shape = tuple(shape)
        if shape and spec.shape[0] == -1 and shape[0] > max_batch:
            raise ProtocolError(400, f"input '{name}': batch of {shape[0]} exceeds the maximum of {max_batch}")
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise ProtocolError(400, f"input '{name}': shape {list(shape)} has {count} elements; the limit is "
                                     f"{MAX_ELEMENTS}")
        iparams = item.get("parameters") or {}
        size = iparams.get("binary_data_size") if isinstance(iparams, dict) else None
        if spec.datatype == "BYTES":
            arr, used = _bytes_input(item, name, shape, count, size, binary[offset:], name in nullable)
            offset += used
            arrays[name] = arr
            continue
        dtype = DTYPES[spec.datatype]
        finite = False  # known finite without looking: JSON numbers in a typed array
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise ProtocolError(400, f"input '{name}': binary_data_size must be a non-negative integer")
            want = count * dtype.itemsize
            if size != want:
                raise ProtocolError(400, f"input '{name}': shape {list(shape)} of {spec.datatype} needs {want} "
                                         f"bytes, but binary_data_size is {size}")
            if offset + size > len(binary):
                raise ProtocolError(400, f"input '{name}': binary_data_size {size} runs past the end of the body "
                                         f"({len(binary) - offset} bytes left)")
            arr = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            data = item.get("data")
            if data is None:
                raise ProtocolError(400, f"input '{name}' has neither 'data' nor binary_data_size")
            flat = _flatten(data, len(shape), name)
            if len(flat) != count:
                raise ProtocolError(400, f"input '{name}': shape {list(shape)} needs {count} values, got {len(flat)}")
            try:
                arr = _float_array(flat, code, dtype) if (code := _ARRAY_CODES.get(spec.datatype)) else None
                # JSON has no NaN or Infinity (orjson refuses them, and 1e400), so doubles taken by the typed array
                # are finite (as float32 a value beyond the type becomes inf: that is still checked below).
                finite = arr is not None and code == "d"
                if arr is None:  # numpy words the refusal (a null becomes NaN, refused below with the rest)
                    with np.errstate(over="ignore"):  # a value beyond the type is refused below as inf
                        arr = np.asarray(flat, dtype=dtype)
                arr = arr.reshape(shape)
            except (TypeError, ValueError, OverflowError):
                at = _not_a_number(flat, skip_nulls=dtype.kind == "f")
                if at < 0:  # only numbers: one too large for the type
                    raise ProtocolError(400, f"input '{name}': value at flat index {_out_of_range(flat, dtype)} is out "
                                             f"of range for {spec.datatype}") from None
                raise ProtocolError(400, f"input '{name}': expected {spec.datatype} values, got {flat[at]!r}") from None
            if dtype.kind != "f" and any(isinstance(v, float) and not v.is_integer() for v in flat[:1000]):
                raise ProtocolError(400, f"input '{name}': expected {spec.datatype} values, got floats")
        # A sum is finite exactly when every value is (unless it overflows, which the exact check then sorts
        # out). Not a dot product, though that is cheaper: numpy's dot lets go of the GIL even for thirty values,
        # and at every release a background thread (the prediction log's writer) can cut in and hold the serving
        # loop up; a small ufunc keeps the GIL.
        if (dtype.kind == "f" and not finite and not math.isfinite(np.add.reduce(arr, axis=None))
                and not np.isfinite(arr).all()):
            flat_arr = arr.ravel()
            # A missing value (NaN: a JSON null or a binary NaN) is the model's to impute, if it says it does.
            bad = np.isinf(flat_arr) if name in nullable else ~np.isfinite(flat_arr)
            if bad.any():
                bad_at = int(np.flatnonzero(bad)[0])
                if np.isnan(flat_arr[bad_at]):
                    what = "null" if size is None else "NaN"
                    raise ProtocolError(400, f"input '{name}': value at flat index {bad_at} is {what} (missing), "
                                             "and this model does not impute missing values of this input")
                raise ProtocolError(400, f"input '{name}': value at flat index {bad_at} is {flat_arr[bad_at]}; "
                                         "inputs must be finite")
        arrays[name] = arr
    if offset != len(binary):
        raise ProtocolError(400, f"the body has {len(binary) - offset} bytes of binary data no input claims")
    if len(arrays) != len(specs):  # each name was checked known and given once: a shortfall is a missing one
        missing = [s.describe() for n, s in specs.items() if n not in arrays]
        raise ProtocolError(400, f"missing input(s): {', '.join(missing)}")
    if len(arrays) > 1:
        rows = {a.shape[0] for n, a in arrays.items() if specs[n].shape and specs[n].shape[0] == -1}
        if len(rows) > 1:
            raise ProtocolError(400, f"inputs disagree on the batch size: {sorted(rows)}")
    requested = None
    output_binary: dict[str, bool] = {}
    if header.get("outputs") is not None:
        outs = header["outputs"]
        if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
            raise ProtocolError(400, "'outputs' must be a list of objects with a 'name'")
        requested = [o["name"] for o in outs]
        for o in outs:
            p = o.get("parameters") or {}
            output_binary[o["name"]] = bool(p.get("binary_data", False)) if isinstance(p, dict) else False
    rid = header.get("id")
    return InferRequest(id=str(rid) if rid is not None else None, arrays=arrays,
                        binary_output=bool(params.get("binary_data_output", False)), output_binary=output_binary,
                        requested_outputs=requested)


def _not_a_number(values: list, skip_nulls: bool = False) -> int:
    """The index of the first value that is not a number (a string, a null, an object or a list), or -1; with
    ``skip_nulls``, a null counts as a number (a float tensor reads it as NaN, judged afterwards)."""
    kinds = str | dict | list if skip_nulls else str | dict | list | type(None)
    return next((i for i, v in enumerate(values) if isinstance(v, kinds)), -1)


def _out_of_range(values: list, dtype: np.dtype) -> int:
    """The index of the first number the dtype cannot hold (0 when none is found)."""
    if dtype.kind not in "iuf":
        return 0
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    num = int if dtype.kind in "iu" else float  # Python numbers compare exactly with any int
    low, high = num(info.min), num(info.max)
    return next((i for i, v in enumerate(values) if not low <= v <= high), 0)


_PACKERS: dict[tuple[str, int], struct.Struct] = {}


def _packed(values: list, code: str, dtype: np.dtype) -> np.ndarray | None:
    """A request's JSON numbers as a float array, known finite, or None when the full path must look.

    ``struct`` packs a few dozen floats three times faster than a typed array plus numpy's finite check, and
    refuses a value beyond float32 where the typed array makes it inf; JSON itself has no NaN or Infinity
    (orjson refuses them, and 1e400). Large inputs take the typed array (no huge argument list)."""
    n = len(values)
    if n > 4096:
        arr = _float_array(values, code, dtype)
        return arr if arr is not None and (code == "d" or math.isfinite(np.add.reduce(arr))) else None
    packer = _PACKERS.get((code, n))
    if packer is None:
        packer = struct.Struct(f"={n}{code}")  # native order, as numpy reads it
        if len(_PACKERS) < 256:
            _PACKERS[(code, n)] = packer
    try:
        return np.frombuffer(packer.pack(*values), dtype)
    except (struct.error, OverflowError, TypeError):
        return None


def _float_array(values: list, code: str, dtype: np.dtype) -> np.ndarray | None:
    """The values as a float array, or None for numpy to convert (and word the error) when the typed array
    will not take them: a string or a null. A value beyond float32's range becomes inf here, as in numpy."""
    try:
        return np.frombuffer(array.array(code, values), dtype)
    except (TypeError, ValueError, OverflowError):
        return None


def _bytes_input(item: dict, name: str, shape: tuple, count: int, size, binary: memoryview,
                 nullable: bool = False):
    """A BYTES tensor: JSON strings, or Triton's binary form (each element a 4-byte little-endian length, then
    its bytes). Strings go to onnxruntime as a numpy object array; a JSON null, where the model takes one, is the
    empty string (its unknown category)."""
    if size is None:
        data = item.get("data")
        if data is None:
            raise ProtocolError(400, f"input '{name}' has neither 'data' nor binary_data_size")
        flat = _flatten(data, len(shape), name)
        if len(flat) != count:
            raise ProtocolError(400, f"input '{name}': shape {list(shape)} needs {count} values, got {len(flat)}")
        at = next((i for i, v in enumerate(flat) if not isinstance(v, str)), -1)
        if at >= 0 and flat[at] is None and not nullable:
            raise ProtocolError(400, f"input '{name}': value at flat index {at} is null (missing), and this model "
                                     "does not impute missing values of this input")
        if at >= 0 and nullable:
            flat = ["" if v is None else v for v in flat]
            at = next((i for i, v in enumerate(flat) if not isinstance(v, str)), -1)
        if at >= 0:
            raise ProtocolError(400, f"input '{name}': expected BYTES values (strings), got {flat[at]!r}")
        return np.array(flat, dtype=object).reshape(shape), 0
    if not isinstance(size, int) or size < 0 or size > len(binary):
        raise ProtocolError(400, f"input '{name}': binary_data_size {size!r} does not fit the body")
    if count * 4 > size:
        raise ProtocolError(400, f"input '{name}': shape {list(shape)} needs at least {count * 4} bytes, but "
                                 f"binary_data_size is {size}")
    out, pos, raw = [], 0, bytes(binary[:size])
    for _ in range(count):
        n = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + n > size:
            raise ProtocolError(400, f"input '{name}': an element's length runs past binary_data_size")
        try:
            out.append(raw[pos:pos + n].decode())
        except UnicodeDecodeError:
            raise ProtocolError(400, f"input '{name}': element {len(out)} is not UTF-8") from None
        pos += n
    if pos != size:
        raise ProtocolError(400, f"input '{name}': {size - pos} bytes left over after {count} elements")
    return np.array(out, dtype=object).reshape(shape), size


def _bytes_output(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.ravel().tolist():
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)


def encode_response(model: str, version: str, request_id: str | None, outputs: dict[str, np.ndarray],
                    req: InferRequest) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body and headers; binary outputs go after the JSON header, as Triton does."""
    names = req.requested_outputs or list(outputs)
    parts: list[bytes] = []
    out_json = []
    for name in names:
        arr = np.ascontiguousarray(outputs[name])
        datatype = NUMPY_TO_OIP.get(arr.dtype, "BYTES")
        entry: dict = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if req.output_binary.get(name, req.binary_output):
            raw = _bytes_output(arr) if datatype == "BYTES" else arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        out_json.append(entry)
    resp: dict = {"model_name": model, "model_version": version, "outputs": out_json}
    if request_id is not None:
        resp["id"] = request_id
    head = orjson.dumps(resp, option=orjson.OPT_SERIALIZE_NUMPY)
    if not parts:
        return head, JSON_HEADERS
    return head + b"".join(parts), [(b"content-type", b"application/octet-stream"),
                                    (b"inference-header-content-length", b"%d" % len(head))]



def check_outputs(req: InferRequest, available: list[str]) -> None:
    for name in req.requested_outputs or ():
        if name not in available:
            raise ProtocolError(400, f"unknown output '{name}'; the model gives: {', '.join(available)}")
