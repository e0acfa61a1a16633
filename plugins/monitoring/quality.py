"""The ``model_quality`` service: realized metrics of a model's scores against labels, computed as the
``performance`` monitor computes them, for other plugins (serving's champion-against-challenger report)."""

from __future__ import annotations

import math

#: Each task's metrics, and whether a higher value is better.
METRICS = {"binary": {"auc": True, "accuracy": True, "precision": True, "recall": True, "f1": True},
           "regression": {"mae": False, "rmse": False, "r2": True}}


class ModelQuality:
    name = "model_quality"
    metrics_of = METRICS

    def metrics(self, task: str, labels, scores, decision_threshold: float = 0.5) -> dict[str, float | None]:
        """``METRICS[task]`` of ``scores`` against ``labels`` (sequences of numbers); None where undefined (AUC
        when every label is the same)."""
        import numpy as np

        from .kinds_model import quality_metrics

        got = quality_metrics(task, np.asarray(labels, float), np.asarray(scores, float), float(decision_threshold))
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in got.items()}
