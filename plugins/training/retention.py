"""What retention prunes of training, as the ``training_retention`` service: per-epoch checkpoints of finished
runs (each run keeps its best and its last by default), and the metrics and artifact rows of deleted runs."""

from __future__ import annotations

import json
from typing import Any

from .spec import lower_is_better
from .tracking import transaction

FINISHED = ("succeeded", "failed", "cancelled")
#: What a run's early stopping watched, when its hyperparameters do not say: its best epoch is the best by this.
DEFAULT_METRIC = "val_loss"


class TrainingRetention:
    name = "training_retention"

    def __init__(self):
        self.app: Any = None

    @property
    def db(self):
        return self.app.catalog.db

    def prune_checkpoints(self, finished_before: float, keep: set[str], protected: set[int]) -> int:
        """Delete the checkpoint rows of runs finished before ``finished_before``, except each run's ``best``
        and/or ``last`` (``keep``); runs in ``protected`` (a registered version's) keep both. Returns the rows
        deleted; their files go with the unreferenced artifacts."""
        runs = list(self.db.query(
            "select id, params from training_runs r where state in (?, ?, ?) and finished < ? and exists "
            "(select 1 from training_artifacts a where a.run_id = r.id and a.kind = 'checkpoint')",
            [*FINISHED, finished_before]))
        deleted = 0
        for run in runs:
            wanted = {"best", "last"} if run["id"] in protected else keep
            kept = self._kept(run["id"], json.loads(run["params"]), wanted)
            marks = ", ".join("?" * len(kept))
            with transaction(self.db):
                deleted += self.db.execute(
                    "delete from training_artifacts where run_id = ? and kind = 'checkpoint'"
                    + (f" and epoch not in ({marks})" if kept else ""), [run["id"], *kept]).rowcount
        return deleted

    def _kept(self, run_id: int, params: dict, wanted: set[str]) -> list[int]:
        """The epochs whose checkpoints stay: the last, and the best by the metric early stopping watched (the
        last when no epoch has a value of it)."""
        epochs = [r[0] for r in self.db.execute(
            "select distinct epoch from training_artifacts where run_id = ? and kind = 'checkpoint' "
            "and epoch is not null order by epoch", [run_id])]
        if not epochs:
            return []
        kept = {epochs[-1]} if "last" in wanted else set()
        if "best" in wanted:
            metric = (params.get("hyperparameters") or {}).get("early_stopping_metric") or DEFAULT_METRIC
            values = dict(self.db.execute("select epoch, value from training_metrics where run_id = ? and key = ? "
                                          "and epoch is not null order by step, rowid", [run_id, metric]))
            scored = [(values[e] if lower_is_better(metric) else -values[e], e) for e in epochs if e in values]
            kept.add(min(scored)[1] if scored else epochs[-1])
        return sorted(kept)

    def prune_deleted_runs(self) -> int:
        """Delete the metrics and artifact rows of runs that no longer exist; returns the rows deleted."""
        with transaction(self.db):
            return sum(self.db.execute(f"delete from {table} where run_id not in (select id from training_runs)"
                                       ).rowcount for table in ("training_metrics", "training_artifacts"))
