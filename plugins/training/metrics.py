"""Evaluation metrics on numpy arrays, shared by validation (early stopping) and the holdout evaluation."""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def evaluate(task: str, outputs: np.ndarray, y: np.ndarray, prefix: str, y_std: float = 1.0) -> dict[str, float]:
    """Metrics of ``outputs`` (probabilities [n, C], or predictions [n, 1] in label units) against ``y``.

    ``y`` is what training uses: 0/1 for binary, class indices for multiclass, and for regression the label in
    label units (callers unscale it first).
    """
    if task == "regression":
        err = outputs.reshape(-1).astype(np.float64) - y.astype(np.float64)
        var = float(np.var(y)) or 1.0
        return {f"{prefix}rmse": float(np.sqrt(np.mean(err ** 2))), f"{prefix}mae": float(np.mean(np.abs(err))),
                f"{prefix}r2": float(1 - np.mean(err ** 2) / var),
                f"{prefix}loss": float(np.mean(err ** 2) / (y_std ** 2))}
    idx = y.astype(np.int64)
    probs = np.clip(outputs.astype(np.float64), EPS, 1 - EPS)
    out = {f"{prefix}loss": float(-np.mean(np.log(probs[np.arange(len(idx)), idx]))),
           f"{prefix}accuracy": float(np.mean(outputs.argmax(axis=1) == idx))}
    if task == "binary":
        out[f"{prefix}auc"] = auc(outputs[:, 1], idx)
    return out


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties given their average rank."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # tied scores share their average rank
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))

