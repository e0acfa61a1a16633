"""Reading what monitors compare: windows of the prediction log and the reference they are held to.

Everything is read through DuckDB in the daemon (the only process that may open the store): the prediction log
the serving plugin writes (read as ``serving.prediction_log``, and ``serving.feedback``), training-set snapshots found
through the model registry's lineage and the ``training_sets`` service, or a Parquet file of the project's.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance import BadRequest, NotFound

PREDICTIONS = "serving.prediction_log"  # the log as JSON rows (a view over serving.predictions)
FEEDBACK = "serving.feedback"


@dataclass
class Frame:
    """Columns as numpy arrays with, for each, whether it is numeric."""

    columns: dict[str, np.ndarray]
    numeric: dict[str, bool]
    rows: int
    source: str


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(name: str, suffix: str = "") -> str:
    # "probabilities[1]" picks one column of a multi-column output (the positive class of a binary model).
    m = re.match(r"^(.+)\[(\d+)\]$", name)
    if m:
        name, suffix = m.group(1), f"[{m.group(2)}]"
    return literal('$."' + name.replace('"', '\\"') + '"' + suffix)


def _fetch(cur, sql: str, args: list | None = None) -> list[tuple]:
    return cur.execute(sql, args or []).fetchall()  # fetchall drains the result, as DuckDB needs


def has_log(cur) -> bool:
    """Whether the serving plugin has created its prediction log in the store."""
    return bool(_fetch(cur, "select 1 from information_schema.tables where table_schema = 'serving' "
                            "and table_name = 'prediction_log'"))


def window_bounds(options: dict, now: float | None = None) -> tuple[float, float]:
    """The current window: the last ``window_s`` seconds (or up to ``window_end``)."""
    end = float(options.get("window_end") or now or time.time())
    return end - float(options["window_s"]), end


def log_filter(deployment: str, start: float, end: float, alias: str = "") -> tuple[str, list]:
    """Rows of one deployment in ``[start, end)``, leaving out shadow traffic (it answered nobody)."""
    p = f"{alias}." if alias else ""
    return (f"{p}deployment = ? and {p}ts >= to_timestamp(?) and {p}ts < to_timestamp(?) and not {p}shadow",
            [deployment, start, end])


def log_window(app, deployment: str, start: float, end: float, *, features: list[str] | None = None,
               outputs: list[str] | None = None, max_rows: int = 1_000_000) -> Frame:
    """The inputs (and/or named outputs) of a deployment's logged predictions between ``start`` and ``end``."""
    cur = app.store.cursor()
    if not has_log(cur):
        raise NotFound("there is no prediction log yet: the serving plugin has not logged any prediction")
    where, args = log_filter(deployment, start, end)
    if features is None and outputs is None:
        keys = _fetch(cur, f"select json_keys(inputs) from {PREDICTIONS} where {where} limit 1", args)
        features = list(keys[0][0]) if keys else []
    names = list(features or []) + list(outputs or [])
    if not names:
        return Frame({}, {}, 0, f"deployment {deployment}")
    # One JSON parse per row: every path is extracted by a single call, into a temporary table that the type
    # check and the fetch then read. A single-valued output is logged as a number; a vector's first element
    # is the score.
    in_paths = [_json_path(f) for f in features or []]
    out_paths = [p for o in outputs or [] for p in (_json_path(o, "[0]"), _json_path(o))]
    cols = [f"i[{k + 1}]" for k in range(len(in_paths))]
    cols += [f"coalesce(o[{2 * k + 1}], o[{2 * k + 2}])" for k in range(len(outputs or []))]
    table = f"monitor_window_{uuid.uuid4().hex}"
    extract = ", ".join(
        ([f"json_extract_string(inputs, [{', '.join(in_paths)}]) i"] if in_paths else [])
        + ([f"json_extract_string(outputs, [{', '.join(out_paths)}]) o"] if out_paths else []))
    cur.execute(f"create temp table {table} as select {', '.join(f'{c} c{k}' for k, c in enumerate(cols))} from "
                f"(select {extract} from {PREDICTIONS} where {where} order by ts limit {int(max_rows)})", args)
    try:
        # A column is numeric when every value present casts to a number.
        tallies = ", ".join(f"count(c{k}), count(try_cast(c{k} as double))" for k in range(len(names)))
        counts = _fetch(cur, f"select count(*), {tallies} from {table}")[0]
        numeric = {n: counts[1 + 2 * k] == counts[2 + 2 * k] for k, n in enumerate(names)}
        select = ", ".join(f"try_cast(c{k} as double) c{k}" if numeric[n] else f"c{k}" for k, n in enumerate(names))
        got = cur.execute(f"select {select} from {table}").fetchnumpy()
    finally:
        cur.execute(f"drop table if exists {table}")
    columns = {n: _plain(got[f"c{k}"], numeric[n]) for k, n in enumerate(names)}
    return Frame(columns, numeric, int(counts[0]), f"prediction log of {deployment}")


def _plain(values, numeric: bool) -> np.ndarray:
    """DuckDB's masked array as a plain one: NaN for a missing number, None for a missing string."""
    if numeric:
        return np.ma.filled(np.ma.asarray(values).astype(float), np.nan)
    out = np.asarray(np.ma.getdata(values), dtype=object).copy()
    out[np.ma.getmaskarray(values)] = None  # filled(None) would write the mask's default, "?"
    return out


def feedback_window(app, deployment: str, start: float, end: float, *, output: str,
                    group: str | None = None) -> dict[str, np.ndarray]:
    """Predictions that have a label: ``score`` (the named output), ``label`` and, if asked, ``group``."""
    cur = app.store.cursor()
    if not has_log(cur):
        raise NotFound("there is no prediction log yet: the serving plugin has not logged any prediction")
    where, args = log_filter(deployment, start, end, alias="p")
    group_expr = f", json_extract_string(p.inputs, {_json_path(group)})" if group else ""
    rows = _fetch(cur, f"""
        select coalesce(json_extract_string(p.outputs, {_json_path(output, "[0]")}),
                        json_extract_string(p.outputs, {_json_path(output)}))::double, f.label {group_expr}
        from {PREDICTIONS} p join {FEEDBACK} f using (request_id, row_index)
        where {where}""", args)
    out = {"score": np.array([r[0] for r in rows], dtype=float), "label": np.array([r[1] for r in rows], dtype=float)}
    if group:
        out["group"] = np.array([str(r[2]) for r in rows], dtype=object)
    return out


# ------------------------------------------------------------------------------------------------ references


def reference(app, options: dict, deployment: str, features: list[str] | None) -> Frame:
    """The reference a monitor's ``reference`` option names: ``"training_set"`` (the served model's training
    data, through the registry's lineage), ``"window"`` (an earlier window of the log), or a Parquet path."""
    kind = options.get("reference", "training_set")
    if kind == "window":
        start, end = window_bounds(options)
        offset = float(options.get("reference_offset_s") or options["window_s"])
        return log_window(app, deployment, start - offset, end - offset, features=features,
                          outputs=options.get("outputs"))
    if kind == "training_set":
        path = training_set_path(app, deployment)
        return parquet(app, path, features, options, f"training set {path.name}")
    path = Path(kind)
    if not path.is_absolute() and app.config.project_dir:
        path = app.config.project_dir / path
    if not path.is_file():
        raise BadRequest(f"reference {kind!r}: no such file ({path})")
    return parquet(app, path, features, options, str(kind))


def training_set_path(app, deployment: str) -> Path:
    """The Parquet snapshot the deployment's newest logged model version was trained on (or, for a version
    registered from a file, the sample registered with it)."""
    cur = app.store.cursor()
    if not has_log(cur):
        raise NotFound("there is no prediction log yet, so the served model is unknown")
    row = _fetch(cur, f"select model, version from {PREDICTIONS} where deployment = ? order by ts desc limit 1",
                 [deployment])
    if not row:
        raise NotFound(f"deployment {deployment!r} has logged no prediction yet, so its model is unknown")
    model, version = row[0]
    registry = app.registry("services").get("model_registry")
    sets = app.registry("services").get("training_sets")
    if registry is not None:
        reference_sha256 = (registry.version(model, version).get("lineage") or {}).get("reference_sha256")
        if reference_sha256:  # a model registered from a file holds the sample it came with as its reference
            return app.artifacts.verify(reference_sha256)
    if registry is None or sets is None:
        raise NotFound("a training-set reference needs the model registry and the feature store; "
                       "set reference = \"window\" or a Parquet path instead")
    lineage = registry.version(model, version).get("lineage") or {}
    ts_id = lineage.get("training_set")
    if ts_id is None:
        raise NotFound(f"model {model} version {version} records no training set in its lineage; "
                       "set reference = \"window\" or a Parquet path instead")
    return Path(sets.get(ts_id)["path"])


def parquet(app, path: Path, features: list[str] | None, options: dict, source: str) -> Frame:
    cur = app.store.cursor()
    rel = f"read_parquet({literal(str(path))})"
    described = _fetch(cur, f"describe select * from {rel}")
    types = {r[0]: r[1] for r in described}
    names = [f for f in (features or list(types)) if f in types]
    if not names:
        raise BadRequest(f"reference {source}: none of the monitored columns ({', '.join(features or [])}) "
                         f"is in it; its columns: {', '.join(types)}")
    limit = int(options.get("reference_max_rows", 1_000_000))
    table = cur.sql(f"select {', '.join(quote(n) for n in names)} from {rel} limit {limit}").to_arrow_table()
    columns, numeric = {}, {}
    for n in names:
        col = table.column(n)
        is_num = _numeric_type(types[n])
        columns[n] = col.to_numpy(zero_copy_only=False).astype(float) if is_num else \
            np.array(col.cast("string").to_pylist(), dtype=object)
        numeric[n] = is_num
    return Frame(columns, numeric, table.num_rows, source)


def _numeric_type(duck_type: str) -> bool:
    t = duck_type.upper()
    return any(t.startswith(p) for p in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                          "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL"))
