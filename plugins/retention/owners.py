"""What other plugins keep and retention prunes through their services: checkpoints and deleted runs
(``training_retention``), monitor runs (``monitor_history``) and feature-view index files (``feature_indexes``).

A plugin that is not loaded has nothing here to prune; its key is left out of the job's result. What a registered
model version's lineage names (its run, through ``model_registry``) keeps its best and last checkpoints whatever
``checkpoints_keep`` says.
"""

from __future__ import annotations

DAY = 86_400


def prune(services, settings: dict, now: float) -> dict:
    out: dict = {}
    training = services.get("training_retention")
    if training is not None:
        registry = services.get("model_registry")
        protected = registry.runs_in_lineage() if registry is not None else set()
        out["checkpoints"] = training.prune_checkpoints(now - settings["checkpoints_days"] * DAY,
                                                        set(settings["checkpoints_keep"]), protected)
        out["deleted_run_rows"] = training.prune_deleted_runs()
    history = services.get("monitor_history")
    if history is not None:
        out["monitor_runs"] = history.prune(now - settings["monitor_runs_days"] * DAY)
    indexes = services.get("feature_indexes")
    if indexes is not None:
        out["feature_index_files"], out["feature_index_bytes"] = indexes.prune(
            now - settings["feature_indexes_days"] * DAY)
    return out
