"""Serving metrics in Prometheus' text format, with Triton's names where Triton has one.

Updated only on the serving event loop (one thread), so plain dicts suffice; ``render`` may run on the same
loop. Latency and batch sizes are histograms so a scraper can compute p50/p99 per model.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1

    def quantile(self, q: float) -> float | None:
        """An upper bound for the q-quantile from the buckets (what Prometheus' histogram_quantile reads)."""
        if not self.count:
            return None
        target, seen = q * self.count, 0
        for b, c in zip(self.buckets, self.counts, strict=True):
            seen += c
            if seen >= target:
                return b
        return float("inf")


# The prediction log's series: name, type, help, key in PredictionLog.stats() (or FeedbackQueue.stats()).
LOG_SERIES = (
    ("appliance_prediction_log_written_rows", "counter", "Prediction rows written to the store.", "written_rows"),
    ("appliance_prediction_log_dropped_requests", "counter",
     "Requests left out of the prediction log because its writer was behind (their answers were sent).",
     "dropped_requests"),
    ("appliance_prediction_log_pending_requests", "gauge", "Requests waiting to be written to the log.",
     "pending_requests"),
    ("appliance_feedback_stored_labels", "counter", "Feedback labels stored.", "feedback_stored_labels"),
    ("appliance_feedback_pending_labels", "gauge", "Feedback labels waiting to be stored.",
     "feedback_pending_labels"),
)

# The serving port's connections: name, type, help, attribute of http.Stats.
CONNECTION_SERIES = (
    ("appliance_serving_connections", "gauge", "Connections open on the serving port.", "open"),
    ("appliance_serving_connection_limit", "gauge",
     "Connections the serving port takes at once ([serving] max_connections, lowered to fit the descriptor "
     "limit).", "limit"),
    ("appliance_serving_buffered_bytes", "gauge", "Bytes of request bodies being received.", "buffered"),
    ("appliance_serving_refused_connections", "counter",
     "Connections refused with a 503 because the port was at its connection limit.", "shed_connections"),
    ("appliance_serving_refused_bodies", "counter",
     "Requests refused with a 503 because the bodies being received had reached [serving] max_buffered_mb.",
     "shed_memory"),
    ("appliance_serving_timeouts", "counter",
     "Connections closed because their client was too slow (a 408 mid-request, or idle keep-alive).", "timeouts"),
)


class ServingMetrics:
    def __init__(self):
        self.success: dict[tuple, int] = defaultdict(int)
        self.failure: dict[tuple, int] = defaultdict(int)
        self.rows: dict[tuple, int] = defaultdict(int)
        self.execs: dict[tuple, int] = defaultdict(int)
        self.duration_us: dict[tuple, float] = defaultdict(float)
        self.queue_us: dict[tuple, float] = defaultdict(float)
        self.infer_ns: dict[tuple, int] = defaultdict(int)
        self.last: dict[tuple, float] = {}  # epoch seconds of the last answered request
        # Per batch size, the executions of that size and the nanoseconds the model ran them (Triton's stats).
        self.batch_sizes: dict[tuple, dict[int, list[int]]] = defaultdict(dict)
        self.latency: dict[tuple, Histogram] = {}
        self.batch: dict[tuple, Histogram] = {}
        self.ready: dict[tuple, int] = {}

    def ok(self, model: str, version: str, rows: int, seconds: float) -> None:
        key = (model, version)
        self.last[key] = time.time()
        self.success[key] += 1
        self.rows[key] += rows
        self.duration_us[key] += seconds * 1e6
        (self.latency.get(key) or self.latency.setdefault(key, Histogram(LATENCY_BUCKETS))).observe(seconds)

    def failed(self, model: str, version: str, reason: str) -> None:
        self.failure[(model, version, reason)] += 1

    def executed(self, model: str, version: str, rows: int, queue_s: float, run_s: float = 0.0) -> None:
        """One model execution of ``rows`` rows: ``queue_s`` its oldest request waited, ``run_s`` the model ran."""
        key = (model, version)
        self.execs[key] += 1
        self.queue_us[key] += queue_s * 1e6
        ns = int(run_s * 1e9)
        self.infer_ns[key] += ns
        size = self.batch_sizes[key].get(rows)
        if size is None:
            self.batch_sizes[key][rows] = [1, ns]
        else:
            size[0] += 1
            size[1] += ns
        (self.batch.get(key) or self.batch.setdefault(key, Histogram(BATCH_BUCKETS))).observe(rows)

    def set_ready(self, model: str, version: str, ready: bool) -> None:
        self.ready[(model, version)] = int(ready)

    def model_stats(self, model: str | None = None, version: str | None = None) -> list[dict]:
        """Triton's statistics extension (``$model_stat`` objects) for every model version seen, or those of one
        deployment (and version). Durations Triton splits further are not: requests are timed whole
        (``success``), model runs as ``compute_infer``; preparing inputs and outputs is within ``success``."""
        keys = {k for k in (*self.ready, *self.success, *self.execs) if model is None or k[0] == model}
        keys |= {k[:2] for k in self.failure if model is None or k[0] == model}
        if version is not None:
            keys = {k for k in keys if k[1] == version}
        out = []
        for key in sorted(keys, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0, k[1])):
            failed = sum(n for k, n in self.failure.items() if k[:2] == key)
            last = self.last.get(key)
            execs = self.execs.get(key, 0)
            out.append({
                "name": key[0], "version": key[1], "last_inference": int(last * 1000) if last else 0,
                "inference_count": self.rows.get(key, 0), "execution_count": execs,
                "inference_stats": {
                    "success": _duration(self.success.get(key, 0), self.duration_us.get(key, 0.0) * 1000),
                    "fail": _duration(failed, 0), "queue": _duration(execs, self.queue_us.get(key, 0.0) * 1000),
                    "compute_input": _duration(0, 0), "compute_infer": _duration(execs, self.infer_ns.get(key, 0)),
                    "compute_output": _duration(0, 0), "cache_hit": _duration(0, 0)},
                "batch_stats": [{"batch_size": size, "compute_input": _duration(0, 0),
                                 "compute_infer": _duration(count, ns), "compute_output": _duration(0, 0)}
                                for size, (count, ns) in sorted(self.batch_sizes.get(key, {}).items())]})
        return out

    def render(self, log_stats: dict[str, int] | None = None, connections=None) -> str:
        """The Prometheus text; ``log_stats`` (the prediction log's ``stats()``) adds the log's series, and
        ``connections`` (the port's ``http.Stats``) the connection series."""
        out: list[str] = []

        def counter(name, help_, series, labels=("model", "version")):
            out.append(f"# HELP {name} {help_}\n# TYPE {name} counter")
            for key, value in series.items():
                out.append(f"{name}{{{_labels(labels, key)}}} {value:g}")

        counter("nv_inference_request_success", "Successful inference requests.", self.success)
        counter("nv_inference_request_failure", "Failed inference requests, by reason.", self.failure,
                ("model", "version", "reason"))
        counter("nv_inference_count", "Inferences performed (rows; a batch of n counts n).", self.rows)
        counter("nv_inference_exec_count", "Model executions (a dynamic batch counts once).", self.execs)
        counter("nv_inference_request_duration_us", "Cumulative request duration in microseconds.", self.duration_us)
        counter("nv_inference_queue_duration_us", "Cumulative time requests waited in the batch queue.", self.queue_us)
        out.append("# HELP nv_model_ready Whether the model version is loaded and serving.\n# TYPE nv_model_ready gauge")
        for key, value in self.ready.items():
            out.append(f"nv_model_ready{{{_labels(('model', 'version'), key)}}} {value}")
        _histograms(out, "appliance_inference_request_duration_seconds", "Request latency.", self.latency)
        _histograms(out, "appliance_inference_batch_size", "Rows per model execution.", self.batch)
        if log_stats is not None:
            for name, kind, help_, key in LOG_SERIES:
                if key in log_stats:
                    out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name} {log_stats[key]}")
        if connections is not None:
            for name, kind, help_, attr in CONNECTION_SERIES:
                out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name} {getattr(connections, attr)}")
        return "\n".join(out) + "\n"


def _duration(count: int, ns: float) -> dict:
    return {"count": int(count), "ns": int(ns)}


def _labels(names, values) -> str:
    return ",".join(f'{n}="{_esc(v)}"' for n, v in zip(names, values, strict=True))


def _esc(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _histograms(out: list[str], name: str, help_: str, series: dict[tuple, Histogram]) -> None:
    out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram")
    for key, h in series.items():
        base = _labels(("model", "version"), key)
        seen = 0
        for b, c in zip(h.buckets, h.counts, strict=True):
            seen += c
            out.append(f'{name}_bucket{{{base},le="{b:g}"}} {seen}')
        out.append(f'{name}_bucket{{{base},le="+Inf"}} {h.count}')
        out.append(f"{name}_sum{{{base}}} {h.sum:g}")
        out.append(f"{name}_count{{{base}}} {h.count}")
