"""Prometheus collectors this plugin registers: every monitor's latest values, open alerts, and the GPUs.

``collect()`` may run on the serving port's event loop, so it reads what is already in memory (the GPU
sample is refreshed at most every ``GPU_TTL_S`` seconds).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import defaultdict

GPU_TTL_S = 10.0


def _esc(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _name(metric: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", metric)


def gauges(series: dict[str, list[tuple[dict, float]]], help_: dict[str, str]) -> str:
    out = []
    for name in sorted(series):
        out.append(f"# HELP {name} {help_.get(name, name.replace('_', ' '))}\n# TYPE {name} gauge")
        for labels, value in series[name]:
            text = ",".join(f'{_name(k)}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {value:.17g}" if text else f"{name} {value:.17g}")
    return "\n".join(out) + "\n" if out else ""


class MonitorCollector:
    """``appliance_monitor_<metric>{monitor=...}`` for each value of each monitor's last run, and
    ``appliance_alerts_active{severity,state}``."""

    name = "monitors"

    def __init__(self, monitors):
        self.monitors = monitors

    def collect(self) -> str:
        series: dict[str, list] = defaultdict(list)
        for monitor, run in sorted(self.monitors.latest.items()):
            for v in run.get("values", []):
                if math.isfinite(v["value"]):
                    series[f"appliance_monitor_{_name(v['metric'])}"].append(
                        ({"monitor": monitor, **v["labels"]}, v["value"]))
            series["appliance_monitor_last_run_timestamp_seconds"].append(({"monitor": monitor}, run["time"]))
        if self.monitors.app is not None:
            for (state, severity), n in sorted(self.monitors.alerts.counts().items()):
                series["appliance_alerts_active"].append(({"state": state, "severity": severity}, n))
        return gauges(series, {"appliance_alerts_active": "Open or acknowledged alerts.",
                               "appliance_monitor_last_run_timestamp_seconds": "When the monitor last ran."})


class GpuCollector:
    """``appliance_gpu_*`` straight from the configured GPU provider, cached briefly; ``appliance_gpu_available``
    is 0 on a machine without a GPU."""

    name = "gpu"

    def __init__(self, providers, provider_name):
        self.providers = providers
        self.provider_name = provider_name  # a callable: the provider named in [monitoring] now
        self._cache: tuple[float, str, dict] | None = None
        self._lock = threading.Lock()

    def sample(self) -> dict:
        name = self.provider_name()
        with self._lock:
            if self._cache and self._cache[1] == name and time.monotonic() - self._cache[0] < GPU_TTL_S:
                return self._cache[2]
            provider = self.providers.get(name)
            sample = provider.sample() if provider else {"available": False, "reason": f"no provider {name!r}",
                                                         "devices": []}
            self._cache = (time.monotonic(), name, sample)
            return sample

    def collect(self) -> str:
        sample = self.sample()
        series: dict[str, list] = defaultdict(list)
        series["appliance_gpu_available"].append(({}, 1.0 if sample.get("available") else 0.0))
        for d in sample.get("devices", []):
            labels = {"gpu": d["index"], "name": d.get("name", "")}
            for key in ("temperature_c", "power_w", "power_limit_w", "memory_used_bytes", "memory_total_bytes",
                        "utilization_pct", "ecc_uncorrected"):
                if d.get(key) is not None:
                    series[f"appliance_gpu_{key}"].append((labels, float(d[key])))
            series["appliance_gpu_throttled"].append((labels, 1.0 if d.get("throttle_reasons") else 0.0))
            for p in d.get("processes", []):
                if p.get("memory_bytes") is not None:
                    series["appliance_gpu_process_memory_bytes"].append(
                        ({"gpu": d["index"], "pid": p["pid"]}, float(p["memory_bytes"])))
        return gauges(series, {"appliance_gpu_available": "1 when the GPU provider sees a GPU, else 0."})


def render(registry) -> str:
    """Every registered collector's text; one that raises is left out (and logged), never the whole page."""
    import logging

    parts = []
    for name, collector in registry.items():
        try:
            parts.append(collector.collect())
        except Exception:
            logging.getLogger("appliance.monitoring").exception("metrics collector %s failed", name)
    return "".join(parts)
