"""Entity keys in, feature values out: a deployment with ``entity_keys`` builds its model's features input from
the online store.

A lookup costs the server a few microseconds of Python per row and the client nothing, so the rows a request
asks for are counted and checked against the deployment's limit before any of that work (``entity_rows``), and
the server does a large one away from its event loop (``server.OFFLOAD_ROWS``).
"""

from __future__ import annotations

from .protocol import ProtocolError, _flatten


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
        data = found[1][k].get("data")
        n = len(data) if isinstance(data, list) else 1  # a [n, 1] list of lists has n rows too
        if n > spec.max_request_rows:
            raise ProtocolError(400, f"input '{k}': {n} rows exceed the maximum of {spec.max_request_rows}")
        rows = max(rows, n)
    return rows


def with_features(spec, model, req: dict, service) -> dict:
    """``req`` with the model's features input built from the online store (``service``), by entity key.

    Each feature of the input is either ``view:feature`` (looked up by the entity keys) or a plain name the
    request sends itself as an input of shape [n] (the transaction's amount, say). Without a configured list,
    the model's signature gives it: training-set columns named ``view__feature`` come from the store.
    """
    found = _entity_inputs(spec, req)
    if found is None:
        return req
    inputs, given = found
    features = list(spec.features) or _signature_features(model, spec.features_input)
    stored = [f for f in features if ":" in f]
    direct = [f for f in features if ":" not in f]
    columns = {}
    for k in [*spec.entity_keys, *direct]:
        if k not in given:
            raise ProtocolError(400, f"input '{k}' is missing: the model's features include it and the "
                                     "online store does not hold it")
        data = given[k].get("data")
        if isinstance(data, list) and len(data) > spec.max_request_rows:
            raise ProtocolError(400, f"input '{k}': {len(data)} rows exceed the maximum of {spec.max_request_rows}")
        data = _flatten(data, 2, k) if isinstance(data, list) else data
        if not isinstance(data, list):
            raise ProtocolError(400, f"input '{k}' needs a 'data' list")
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
    return {**req, "inputs": others + [{"name": spec.features_input, "datatype": inp.datatype,
                                        "shape": [n, len(features)], "data": matrix}]}


def _signature_features(model, input_name: str) -> list[str]:
    for entry in model.signature.get("inputs", []):
        if entry.get("name") == input_name and entry.get("features"):
            return [f.replace("__", ":", 1) if "__" in f else f for f in entry["features"]]
    raise ProtocolError(400, f"the model's signature lists no features for input '{input_name}'; set "
                             "[deployments.NAME] features")
