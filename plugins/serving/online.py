"""Entity keys in, feature values out: a deployment with ``entity_keys`` builds its model's features input from
the online store.

A lookup costs the server a few microseconds of Python per row and the client nothing, so the rows a request
asks for are counted and checked against the deployment's limit before any of that work (``entity_rows``), and
the server does a large one away from its event loop (``server.OFFLOAD_ROWS``).

Keys and the inputs sent beside them come as JSON or as Triton's binary tensors (tritonclient's default): the
binary ones are read out of the body, and what is left of it goes on with the request's other inputs.
"""

from __future__ import annotations

import math

import numpy as np

from .protocol import DTYPES, ProtocolError, _bytes_input, _flatten, _shape

#: The tensor type of an entity key, by the Python type of its online values.
KEY_DATATYPES = {"int": "INT64", "str": "BYTES", "float": "FP64", "bool": "BOOL"}


def _entity_inputs(spec, req: dict) -> tuple[list, dict] | None:
    """The request's inputs and those by name, or None when the request sends the feature values itself (or
    lacks an entity key, which ``parse_inputs`` then names)."""
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or any(isinstance(i, dict) and i.get("name") == spec.features_input
                                           for i in inputs):
        return None
    given = {i.get("name"): i for i in inputs if isinstance(i, dict)}
    if any(k not in given for k in spec.entity_keys):
        return None
    return inputs, given


def entity_rows(spec, req: dict) -> int | None:
    """How many rows the request asks the online store for (None when it needs no lookup); a 400 when that is
    more than the deployment takes, before anything is looked up."""
    found = _entity_inputs(spec, req)
    if found is None:
        return None
    rows = 0
    for k in spec.entity_keys:
        item = found[1][k]
        data = item.get("data")
        n = len(data) if isinstance(data, list) else _declared_rows(item)  # a [n, 1] list of lists has n rows too
        if n > spec.max_request_rows:
            raise ProtocolError(400, f"input '{k}': {n} rows exceed the maximum of {spec.max_request_rows}")
        rows = max(rows, n)
    return rows


def _declared_rows(item: dict) -> int:
    """The rows a binary tensor declares (its first dimension), checked against its bytes later."""
    shape = item.get("shape")
    return shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) and shape[0] >= 0 else 1


def with_features(spec, model, req: dict, service, binary: memoryview = memoryview(b"")) -> tuple[dict, memoryview]:
    """``req`` with the model's features input built from the online store (``service``), by entity key, and
    what is left of the binary part of the body once the keys (and direct inputs) sent in it are read.

    Each feature of the input is either ``view:feature`` (looked up by the entity keys) or a plain name the
    request sends itself as an input of shape [n] (the transaction's amount, say). Without a configured list,
    the model's signature gives it: training-set columns named ``view__feature`` come from the store.
    """
    found = _entity_inputs(spec, req)
    if found is None:
        return req, binary
    inputs, given = found
    features = list(spec.features) or _signature_features(model, spec.features_input)
    stored = [f for f in features if ":" in f]
    direct = [f for f in features if ":" not in f]
    chunks = _binary_chunks(inputs, binary)
    columns = {}
    for k in [*spec.entity_keys, *direct]:
        if k not in given:
            raise ProtocolError(400, f"input '{k}' is missing: the model's features include it and the "
                                     "online store does not hold it")
        item = given[k]
        if k in chunks:
            data = _binary_values(item, k, chunks[k], spec.max_request_rows)
        else:
            data = item.get("data")
            if isinstance(data, list) and len(data) > spec.max_request_rows:
                raise ProtocolError(400, f"input '{k}': {len(data)} rows exceed the maximum of "
                                         f"{spec.max_request_rows}")
            data = _flatten(data, 2, k) if isinstance(data, list) else data
        if not isinstance(data, list):
            raise ProtocolError(400, f"input '{k}' needs a 'data' list, or binary_data_size and its bytes")
        columns[k] = data
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ProtocolError(400, f"inputs disagree on the number of rows: {sorted(lengths)}")
    n = lengths.pop()
    if service is None:
        raise ProtocolError(503, "the online feature store is not loaded")
    rows = [{k: columns[k][i] for k in spec.entity_keys} for i in range(n)]
    try:
        found_values = service.get_many(rows, stored) if stored else [{} for _ in rows]
    except Exception as exc:
        # The feature store's own status says whose fault it is: a damaged store is a 503, not the client's 400.
        status = getattr(exc, "status", 400)
        raise ProtocolError(status if isinstance(status, int) and 400 <= status < 600 else 400,
                            getattr(exc, "message", None) or str(exc)) from None
    matrix = []
    imputes = spec.features_input in model.nullable  # a missing or expired value goes in as null
    for i, (row, values) in enumerate(zip(rows, found_values, strict=True)):
        vec = [values.get(f) if ":" in f else columns[f][i] for f in features]
        absent = [] if imputes else [f for f, v in zip(features, vec, strict=True) if v is None]
        if absent:
            raise ProtocolError(400, f"no online value for {', '.join(absent)} at {row}, and the model does not "
                                     f"impute missing values of input '{spec.features_input}'")
        matrix.append(vec)
    inp = model.inputs[spec.features_input]
    used = set(spec.entity_keys) | set(direct)
    others = [i for i in inputs if isinstance(i, dict) and i.get("name") not in used]
    rest = b"".join(bytes(chunks[i["name"]]) for i in others if i.get("name") in chunks)
    return {**req, "inputs": others + [{"name": spec.features_input, "datatype": inp.datatype,
                                        "shape": [n, len(features)], "data": matrix}]}, memoryview(rest)


def _binary_chunks(inputs: list, binary: memoryview) -> dict[str, memoryview]:
    """Each binary input's bytes, by name: the binary part of the body holds them one after another, in the
    order of the inputs that declare a ``binary_data_size``."""
    chunks, offset = {}, 0
    for item in inputs:
        params = item.get("parameters") if isinstance(item, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = item.get("name")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(400, f"input '{name}': binary_data_size {size!r} does not fit the body "
                                     f"({len(binary) - offset} bytes left)")
        chunks[name] = binary[offset:offset + size]
        offset += size
    if offset != len(binary):
        raise ProtocolError(400, f"the body has {len(binary) - offset} bytes of binary data no input claims")
    return chunks


def _binary_values(item: dict, name: str, chunk: memoryview, max_rows: int) -> list:
    """A binary key (or direct input) tensor as a flat list of Python values, checked against its shape."""
    shape = _shape(item, name)
    if shape and shape[0] > max_rows:
        raise ProtocolError(400, f"input '{name}': {shape[0]} rows exceed the maximum of {max_rows}")
    count = math.prod(shape)
    datatype = item.get("datatype")
    if datatype == "BYTES":
        return _bytes_input(item, name, shape, count, len(chunk), chunk)[0].ravel().tolist()
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise ProtocolError(400, f"input '{name}': datatype {datatype!r} is not a tensor type; expected one of "
                                 f"{', '.join([*DTYPES, 'BYTES'])}")
    if count * dtype.itemsize != len(chunk):
        raise ProtocolError(400, f"input '{name}': shape {list(shape)} of {datatype} needs {count * dtype.itemsize} "
                                 f"bytes, but binary_data_size is {len(chunk)}")
    return np.frombuffer(chunk, dtype=dtype).tolist()


def metadata(spec, model, service) -> dict:
    """The model's metadata as this deployment takes requests: with entity keys, the keys (typed by the online
    values of their views) and the inputs sent beside them, instead of the features input the server builds."""
    meta = model.metadata()
    if not spec.entity_keys:
        return meta
    try:
        features = list(spec.features) or _signature_features(model, spec.features_input)
    except ProtocolError:  # no feature list: the request must send the features input itself
        return meta
    key_types: dict[str, str] = {}
    for view in dict.fromkeys(f.split(":", 1)[0].split("@", 1)[0] for f in features if ":" in f):
        key_types.update(service.key_types(view) if service is not None else {})
    taken = model.inputs[spec.features_input].datatype
    inputs = [{"name": k, "datatype": KEY_DATATYPES.get(key_types.get(k), "BYTES"), "shape": [-1]}
              for k in spec.entity_keys]
    inputs += [{"name": f, "datatype": taken, "shape": [-1]} for f in features if ":" not in f]
    inputs += [s.to_dict() for name, s in model.inputs.items() if name != spec.features_input]
    return {**meta, "inputs": inputs}


def _signature_features(model, input_name: str) -> list[str]:
    for entry in model.signature.get("inputs", []):
        if entry.get("name") == input_name and entry.get("features"):
            return [f.replace("__", ":", 1) if "__" in f else f for f in entry["features"]]
    raise ProtocolError(400, f"the model's signature lists no features for input '{input_name}'; set "
                             "[deployments.NAME] features")
