"""Reading a training-set snapshot (Parquet) in the child: columns, split, training statistics, encodings.

Everything the exported graph needs to take raw values (means, scales, category vocabularies) is computed here
from the training rows only, so validation and holdout rows never leak into preprocessing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance import BadRequest


@dataclass
class Part:
    numeric: np.ndarray  # float32 [n, len(numeric_features)], NaN where missing
    codes: np.ndarray  # int64 [n, len(categorical_features)]: 0 = unknown, i + 1 = vocabulary[i]
    raw_categorical: np.ndarray  # object (str) [n, len(categorical_features)]: what a client sends
    y: np.ndarray  # float32 (binary 0/1, regression) or int64 class index (multiclass)


@dataclass
class Prepared:
    task: str
    numeric_features: list[str]
    categorical_features: list[str]
    vocabularies: list[list[str]]
    mean: np.ndarray
    std: np.ndarray
    class_labels: list[Any] | None
    y_mean: float = 0.0
    y_std: float = 1.0
    parts: dict[str, Part] = field(default_factory=dict)
    holdout_sha256: str = ""
    #: Rows left out because their label is missing: a run's result and its log say how many.
    null_labels: int = 0

    @property
    def class_counts(self) -> list[int] | None:
        if self.class_labels is None:
            return None
        return np.bincount(self.parts["train"].y.astype(np.int64), minlength=len(self.class_labels)).tolist()


def load(spec: dict, path: str) -> Prepared:
    """Read ``path`` (Parquet, never pickle) and prepare it as ``spec`` says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    label, split = spec["label"], spec["split"]
    time_col = split["column"] if split["method"] == "time" else None
    for col in [label, *spec.get("features", []), *spec.get("categorical", []), *([time_col] if time_col else [])]:
        if col not in table.column_names:
            raise BadRequest(f"column {col!r} is not in the training data; it has {', '.join(table.column_names)}")
    before = table.num_rows
    table = table.filter(table[label].is_valid())
    null_labels = before - table.num_rows
    if table.num_rows < 10:
        raise BadRequest(f"the training data has {table.num_rows} labelled rows ({null_labels} of {before} have no "
                         f"label {label!r}); at least 10 are needed")
    features = spec.get("features") or [c for c in table.column_names if c not in (label, time_col)]
    declared = set(spec.get("categorical", []))
    categorical = [c for c in features if c in declared or _is_text(table.schema.field(c).type, pa)]
    numeric = [c for c in features if c not in categorical]

    n = table.num_rows
    num = np.column_stack([_floats(table[c], pa) for c in numeric]).astype(np.float32) if numeric else \
        np.zeros((n, 0), np.float32)
    raw_cat = np.array([[("" if v is None else str(v)) for v in table[c].to_pylist()] for c in categorical],
                       dtype=object).T.reshape(n, len(categorical))
    order = _split_order(table, split, time_col, pa)
    n_hold = max(1, int(round(n * split["holdout"])))
    n_val = max(1, int(round(n * split["validation"])))
    index = {"train": order[: n - n_val - n_hold], "validation": order[n - n_val - n_hold: n - n_hold],
             "holdout": order[n - n_hold:]}
    train = index["train"]
    mean = np.nan_to_num(np.nanmean(num[train], axis=0)) if numeric else np.zeros(0, np.float32)
    std = np.nan_to_num(np.nanstd(num[train], axis=0)) if numeric else np.zeros(0, np.float32)
    std[std == 0] = 1.0
    vocabularies = [_vocabulary(raw_cat[train, j], spec["max_categories"]) for j in range(len(categorical))]
    codes = _encode(raw_cat, vocabularies)

    y_raw = table[label].to_numpy(zero_copy_only=False)
    prepared = Prepared(spec["task"], numeric, categorical, vocabularies, mean.astype(np.float32),
                        std.astype(np.float32), None, null_labels=null_labels)
    y = _labels(prepared, y_raw, train)
    for name, idx in index.items():
        prepared.parts[name] = Part(num[idx], codes[idx], raw_cat[idx], y[idx])
    prepared.holdout_sha256 = _fingerprint(prepared.parts["holdout"], y_raw[index["holdout"]])
    return prepared


def _is_text(dtype, pa) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)


def _floats(col, pa) -> np.ndarray:
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = col.cast(pa.int64())
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _split_order(table, split: dict, time_col: str | None, pa) -> np.ndarray:
    if time_col:
        # The newest rows are held out, as they will be in production: no peeking at the future.
        return np.argsort(_floats(table[time_col], pa), kind="stable")
    return np.random.default_rng(split["seed"]).permutation(table.num_rows)


def _vocabulary(values: np.ndarray, limit: int) -> list[str]:
    uniq, counts = np.unique(values.astype(str), return_counts=True)
    ranked = sorted(zip(uniq.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))
    return [v for v, _ in ranked[:limit]]


def _encode(raw: np.ndarray, vocabularies: list[list[str]]) -> np.ndarray:
    codes = np.zeros(raw.shape, np.int64)
    for j, vocab in enumerate(vocabularies):
        lookup = {v: i + 1 for i, v in enumerate(vocab)}
        codes[:, j] = [lookup.get(v, 0) for v in raw[:, j]]
    return codes


def _labels(prepared: Prepared, y_raw: np.ndarray, train: np.ndarray) -> np.ndarray:
    if prepared.task == "regression":
        y = y_raw.astype(np.float32)
        prepared.y_mean, prepared.y_std = float(y[train].mean()), float(y[train].std() or 1.0)
        return (y - prepared.y_mean) / prepared.y_std
    classes = sorted({v.item() if hasattr(v, "item") else v for v in y_raw})
    if prepared.task == "binary" and len(classes) != 2:
        raise BadRequest(f"a binary task needs exactly 2 label values, found {len(classes)}: {classes[:10]}")
    if prepared.task == "multiclass" and len(classes) < 2:
        raise BadRequest("a multiclass task needs at least 2 label values")
    prepared.class_labels = classes
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[v.item() if hasattr(v, "item") else v] for v in y_raw], np.int64)
    return y.astype(np.float32) if prepared.task == "binary" else y


def _fingerprint(part: Part, y_raw: np.ndarray) -> str:
    """The holdout's identity: the promotion gate compares versions only on the very same rows."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(part.numeric).tobytes())
    h.update("\x1f".join(part.raw_categorical.ravel().tolist()).encode())
    h.update(repr(y_raw.tolist()).encode())
    return h.hexdigest()
