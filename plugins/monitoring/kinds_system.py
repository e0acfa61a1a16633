"""Monitor kinds that watch the machinery: serving health per deployment, the GPUs, and the box itself."""

from __future__ import annotations

import http.client
import re
import time

from . import data
from .kinds_model import Kind

# ------------------------------------------------------------------------------------------------ serving

_SAMPLE = re.compile(r'^(nv_inference_request_(?:success|failure))\{([^}]*)\}\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


#: Failure reasons that are the client's doing (a 4xx): counted apart, so a client's bad requests never read
#: as the server failing.
CLIENT_REASONS = {"bad_request", "content_type"}


def serving_counters(port: int | None, deployment: str) -> tuple[float, float, float] | None:
    """Successful requests, server failures and client errors of the deployment so far, read from the serving
    port's ``/metrics`` (its public face), so this plugin needs nothing private of the serving plugin."""
    if not port:
        return None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    ok = failed = client = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        labels = dict(_LABEL.findall(m.group(2))) if m else {}
        if m and labels.get("model") == deployment:
            if m.group(1).endswith("success"):
                ok += float(m.group(3))
            elif labels.get("reason") in CLIENT_REASONS:
                client += float(m.group(3))
            else:
                failed += float(m.group(3))
    return ok, failed, client


_last_counters: dict[str, tuple[float, float, float]] = {}


def run_serving(ctx) -> None:
    o = ctx.options
    dep = o["deployment"]
    start, end = data.window_bounds(o)
    cur = ctx.app.store.cursor()
    p50 = p99 = None
    rows = requests = 0
    if data.has_log(cur):
        where, args = data.log_filter(dep, start, end)
        rows, requests, p50, p99 = cur.execute(
            f"select count(*), count(distinct request_id), quantile_cont(latency_us, 0.5), "
            f"quantile_cont(latency_us, 0.99) from {data.PREDICTIONS} where {where}", args).fetchall()[0]
    seconds = end - start
    health = {"rows": rows, "requests": requests, "rows_per_s": rows / seconds, "requests_per_s": requests / seconds,
              "p50_ms": p50 / 1000.0 if p50 is not None else None, "p99_ms": p99 / 1000.0 if p99 is not None else None}
    counters = serving_counters(ctx.app.ports.get("serving"), dep)
    if counters is not None:
        # Counters are cumulative since the daemon started; the error rate is over the time since the last run.
        before = _last_counters.get(ctx.monitor, (0.0, 0.0, 0.0))
        if any(now < then for now, then in zip(counters, before, strict=True)):
            before = (0.0, 0.0, 0.0)  # the counters restarted
        _last_counters[ctx.monitor] = counters
        ok, failed, client = (now - then for now, then in zip(counters, before, strict=True))
        total = ok + failed + client
        health["error_rate"] = failed / total if total else 0.0
        health["errors"] = failed
        health["client_error_rate"] = client / total if total else 0.0
        health["client_errors"] = client
    ctx.details["health"] = health
    for key in ("rows_per_s", "requests_per_s", "p50_ms", "p99_ms", "error_rate", "client_error_rate"):
        ctx.value(f"serving_{key}", health.get(key), deployment=dep)
    if o["max_p99_ms"] is not None and health["p99_ms"] is not None:
        ctx.check("latency", health["p99_ms"] > o["max_p99_ms"], f"deployment {dep}: p99 latency "
                  f"{health['p99_ms']:.2f} ms (limit {o['max_p99_ms']:g} ms)", subject=f"deployment:{dep}",
                  value=health["p99_ms"], threshold=o["max_p99_ms"])
    if "error_rate" in health:
        ctx.check("error_rate", health["error_rate"] > o["max_error_rate"], f"deployment {dep}: "
                  f"{health['error_rate']:.1%} of requests failed on the server (limit {o['max_error_rate']:.1%}); "
                  f"{health['client_error_rate']:.1%} were refused as the client's mistakes (4xx)",
                  subject=f"deployment:{dep}", value=health["error_rate"], threshold=o["max_error_rate"])
        if o["max_client_error_rate"] is not None:
            ctx.check("client_error_rate", health["client_error_rate"] > o["max_client_error_rate"],
                      f"deployment {dep}: {health['client_error_rate']:.1%} of requests were refused as bad (4xx; "
                      f"limit {o['max_client_error_rate']:.1%})", subject=f"deployment:{dep}",
                      value=health["client_error_rate"], threshold=o["max_client_error_rate"])


# ------------------------------------------------------------------------------------------------ GPU


def run_gpu(ctx, providers) -> None:
    o = ctx.options
    provider = providers.get(o["provider"])
    if provider is None:
        raise ValueError(f"no GPU provider {o['provider']!r}; registered: {', '.join(providers.names()) or 'none'}")
    sample = provider.sample()
    ctx.details["gpu"] = sample
    if not sample.get("available"):
        ctx.status = "no GPU"
        ctx.details["no_gpu"] = sample.get("reason") or "no GPU"
        ctx.value("gpu_available", 0)
        return
    ctx.value("gpu_available", 1)
    for d in sample["devices"]:
        idx, subject = d["index"], f"gpu:{d['index']}"
        for key in ("temperature_c", "power_w", "power_limit_w", "memory_used_bytes", "memory_total_bytes",
                    "utilization_pct", "ecc_uncorrected"):
            ctx.value(f"gpu_{key}", d.get(key), gpu=idx)
        for p in d.get("processes", []):
            ctx.value("gpu_process_memory_bytes", p.get("memory_bytes"), gpu=idx, pid=p["pid"])
        temp = d.get("temperature_c")
        if temp is not None:
            ctx.check("temperature", temp >= o["max_temperature_c"], f"GPU {idx} ({d.get('name', '')}) is at "
                      f"{temp:g} °C (limit {o['max_temperature_c']:g} °C)", subject=subject, value=temp,
                      threshold=o["max_temperature_c"])
        harmful = [r for r in d.get("throttle_reasons", []) if r in o["throttle_reasons"]]
        ctx.value("gpu_throttled", int(bool(harmful)), gpu=idx)
        ctx.check("throttling", bool(harmful), f"GPU {idx} is throttled: {', '.join(harmful)}" if harmful
                  else f"GPU {idx} is not throttled", subject=subject)
        ecc = d.get("ecc_uncorrected")
        if ecc is not None:
            ctx.check("ecc", ecc > 0, f"GPU {idx} has {ecc} uncorrected ECC error(s)", subject=subject,
                      severity="error", value=ecc, threshold=0)


# ------------------------------------------------------------------------------------------------ the box


def run_box(ctx) -> None:
    import psutil

    o = ctx.options
    disk = psutil.disk_usage(str(ctx.app.home.root))
    mem = psutil.virtual_memory()
    rss = psutil.Process().memory_info().rss
    box = {"disk_free_bytes": disk.free, "disk_total_bytes": disk.total,
           "disk_free_pct": 100.0 * disk.free / disk.total if disk.total else 0.0,
           "memory_available_bytes": mem.available, "memory_total_bytes": mem.total,
           "memory_used_pct": mem.percent, "daemon_rss_bytes": rss, "time": time.time()}
    ctx.details["box"] = box
    for key in ("disk_free_bytes", "disk_free_pct", "memory_available_bytes", "memory_used_pct", "daemon_rss_bytes"):
        ctx.value(f"box_{key}", box[key])
    ctx.check("disk", box["disk_free_pct"] < o["min_disk_free_pct"], f"{box['disk_free_pct']:.1f}% of the home's "
              f"volume is free (at least {o['min_disk_free_pct']:g}% wanted)", subject="box:disk",
              value=box["disk_free_pct"], threshold=o["min_disk_free_pct"])
    ctx.check("memory", mem.percent > o["max_memory_used_pct"], f"{mem.percent:.1f}% of RAM is used "
              f"(limit {o['max_memory_used_pct']:g}%)", subject="box:memory", value=mem.percent,
              threshold=o["max_memory_used_pct"])
    if o["max_daemon_rss_mb"] is not None:
        mb = rss / 2**20
        ctx.check("daemon_memory", mb > o["max_daemon_rss_mb"], f"the daemon uses {mb:.0f} MB "
                  f"(limit {o['max_daemon_rss_mb']:g} MB)", subject="box:daemon", value=mb,
                  threshold=o["max_daemon_rss_mb"])


def kinds(providers) -> list[Kind]:
    """The system kinds; ``providers`` is the ``gpu_providers`` registry, read when the monitor runs."""
    from .gpu import HARMFUL_THROTTLE

    return [
        Kind("serving", "p50/p99 latency, error rate and throughput of a deployment", run_serving,
             {"deployment": None, "window_s": 300.0, "window_end": None, "max_p99_ms": None,
              "max_error_rate": 0.05, "max_client_error_rate": None}),
        Kind("gpu", "GPU temperature, power, memory, utilisation, throttling, ECC errors, memory per process",
             lambda ctx: run_gpu(ctx, providers),
             {"provider": "nvml", "max_temperature_c": 85.0, "throttle_reasons": sorted(HARMFUL_THROTTLE)}, ()),
        Kind("box", "free disk on the home's volume, RAM, and the daemon's own memory", run_box,
             {"min_disk_free_pct": 10.0, "max_memory_used_pct": 95.0, "max_daemon_rss_mb": None}, ()),
    ]
