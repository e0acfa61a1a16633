"""The MLflow side of bench/train.py; runs in MLflow's own virtualenv, never ours.

    mlflow-venv/bin/python bench/mlflow_side.py DB_PATH SINGLE_CALLS BATCH_METRICS
    mlflow-venv/bin/python bench/mlflow_side.py remote TRACKING_URI METRICS

The first logs SINGLE_CALLS metrics with ``log_metric`` and BATCH_METRICS with ``log_batch`` (1000 per call,
MLflow's limit) to a local sqlite tracking store. The second is MLflow's client against a tracking server (the
appliance, or ``mlflow server``; the token, if any, in MLFLOW_TRACKING_TOKEN): one run, METRICS metrics by
``log_batch``, then the metric's history read back to check every one arrived. Each prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time


def main(db: str, single: int, batched: int) -> dict:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metric("warmup", 0.0, step=0)  # the first call creates tables and caches; not timed
        start = time.perf_counter()
        for step in range(single):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        single_s = time.perf_counter() - start
        now = int(time.time() * 1000)
        start = time.perf_counter()
        for first in range(0, batched, 1000):
            metrics = [Metric("batch_loss", 1.0 / (s + 1), now, s) for s in range(first, min(batched, first + 1000))]
            client.log_batch(run.info.run_id, metrics=metrics)
        batch_s = time.perf_counter() - start
    return {"log_metric_per_s": single / single_s, "log_metric_per_call_us": single_s / single * 1e6,
            "log_batch_per_s": batched / batch_s, "log_batch_per_call_us": batch_s / (batched / 1000) * 1e6,
            "mlflow": mlflow.__version__}


def remote(uri: str, n: int) -> dict:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-remote")
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metric("warmup", 0.0, step=0)  # connection set up and the run cached; not timed
        now = int(time.time() * 1000)
        start = time.perf_counter()
        for first in range(0, n, 1000):
            client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), now, s)
                                                       for s in range(first, min(n, first + 1000))])
        seconds = time.perf_counter() - start
    history = len(client.get_metric_history(run.info.run_id, "loss"))
    return {"metrics": n, "seconds": seconds, "metrics_per_s": n / seconds, "history": history,
            "mlflow": mlflow.__version__}


if __name__ == "__main__":
    if sys.argv[1] == "remote":
        print(json.dumps(remote(sys.argv[2], int(sys.argv[3]))))
    else:
        print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
