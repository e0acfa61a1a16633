"""Drift between a reference sample and a current one, per column and for the whole dataset.

The test for a column is chosen as Evidently chooses it, by the column's type, the reference's size and the
number of distinct values, so that a verdict here reads the same as an Evidently report on the same data:

=============  ==============================  ==============================
column         reference <= 1000 rows          reference > 1000 rows
=============  ==============================  ==============================
numeric, > 5   Kolmogorov-Smirnov (p < 0.05)   Wasserstein, normed (>= 0.1)
distinct
numeric <= 5,  chi-square (p < 0.05); z-test   Jensen-Shannon (>= 0.1)
categorical    for two values (p < 0.05)
=============  ==============================  ==============================

PSI (>= 0.1) is available by name. The dataset drifts when at least ``drift_share`` (0.5) of its columns do.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats

#: name -> (default threshold, True when the statistic is a p-value, so drift is *below* the threshold)
TESTS: dict[str, tuple[float, bool]] = {
    "ks": (0.05, True),
    "chisquare": (0.05, True),
    "z": (0.05, True),
    "wasserstein": (0.1, False),
    "jensenshannon": (0.1, False),
    "psi": (0.1, False),
}
SMALL_REFERENCE = 1000
DRIFT_SHARE = 0.5


@dataclass
class ColumnDrift:
    column: str
    test: str
    statistic: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int

    def to_dict(self) -> dict:
        return {"column": self.column, "test": self.test, "statistic": self.statistic,
                "threshold": self.threshold, "drifted": self.drifted, "reference_rows": self.reference_rows,
                "current_rows": self.current_rows}


def choose_test(reference: np.ndarray, current: np.ndarray, numeric: bool) -> str:
    """Evidently's default test for a column of this type, size and number of distinct values."""
    if numeric:
        few = _distinct_at_most(reference, current, 5)
        if len(reference) <= SMALL_REFERENCE:
            return "ks" if not few else ("chisquare" if _n_distinct(reference, current) > 2 else "z")
        return "jensenshannon" if few else "wasserstein"
    if len(reference) <= SMALL_REFERENCE:
        return "chisquare" if _n_distinct(reference, current) > 2 else "z"
    return "jensenshannon"


def _n_distinct(reference: np.ndarray, current: np.ndarray) -> int:
    return len(np.unique(np.concatenate([reference, current])))


def _distinct_at_most(reference: np.ndarray, current: np.ndarray, k: int) -> bool:
    # A quick look at a few values settles the common case (many distinct values) without a full unique().
    head = np.unique(np.concatenate([reference[:64], current[:64]]))
    return len(head) <= k and _n_distinct(reference, current) <= k


def statistic(test: str, reference: np.ndarray, current: np.ndarray, numeric: bool) -> float:
    if test == "ks":
        return stats.ks_2samp(reference, current)[1]
    if test == "chisquare":
        return stats.chi_square(reference, current)[1]
    if test == "z":
        return stats.z_test(reference, current)[1]
    if test == "wasserstein":
        return stats.wasserstein_norm(reference, current)
    if test == "jensenshannon":
        return stats.jensen_shannon(reference, current, numeric)
    if test == "psi":
        return stats.psi(reference, current, numeric)
    raise ValueError(f"unknown drift test {test!r}; known tests: {', '.join(TESTS)}")


def column_drift(column: str, reference: np.ndarray, current: np.ndarray, *, numeric: bool,
                 test: str | None = None, threshold: float | None = None) -> ColumnDrift:
    """One column's drift; nulls (None / NaN) are dropped first, as data quality reports them separately."""
    reference, current = _drop_nulls(reference, numeric), _drop_nulls(current, numeric)
    if not len(reference) or not len(current):
        return ColumnDrift(column, test or "none", float("nan"), float("nan"), False, len(reference), len(current))
    test = test or choose_test(reference, current, numeric)
    default, is_p = TESTS[test]
    limit = default if threshold is None else threshold
    value = float(statistic(test, reference, current, numeric))
    drifted = value < limit if is_p else value >= limit
    return ColumnDrift(column, test, value, limit, bool(drifted), len(reference), len(current))


def _drop_nulls(values: np.ndarray, numeric: bool) -> np.ndarray:
    values = np.asarray(values)
    if numeric:
        values = values.astype(float, copy=False)
        if not np.isnan(values.sum()):  # one fast pass settles the usual case: nothing to drop, nothing copied
            return values
        return values[~np.isnan(values)]
    return np.array([str(v) for v in values if v is not None], dtype=object) if values.dtype == object \
        else values.astype(str)


def dataset_drift(columns: dict[str, Any], *, tests: dict[str, str] | None = None,
                  thresholds: dict[str, float] | None = None, drift_share: float = DRIFT_SHARE,
                  workers: int | None = None) -> dict:
    """Drift of every column (``name -> (reference, current, numeric)``, or a function returning that, called
    in the worker so that a caller can load one column at a time) and the dataset's verdict.

    Columns run in threads: numpy releases the GIL in the large array passes that dominate here.
    """
    tests, thresholds = tests or {}, thresholds or {}

    def one(name: str) -> ColumnDrift:
        item = columns[name]
        ref, cur, numeric = item() if callable(item) else item
        return column_drift(name, ref, cur, numeric=numeric, test=tests.get(name, tests.get("*")),
                            threshold=thresholds.get(name, thresholds.get("*")))

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, columns))
    drifted = [r.column for r in results if r.drifted]
    share = len(drifted) / len(results) if results else 0.0
    return {"columns": [r.to_dict() for r in results], "drifted_columns": drifted,
            "drift_share": share, "share_threshold": drift_share,
            "dataset_drift": bool(results) and share >= drift_share}
