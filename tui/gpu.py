"""GPUs as the daemon reports them on its Prometheus page, and the history the dashboard keeps of them."""

from __future__ import annotations

from collections import deque

from .widgets.format import bar, number, size, sparkline

#: Points kept per GPU and figure (at the two-second poll: four minutes).
HISTORY = 120
FIGURES = ("utilization_pct", "memory_pct", "temperature_c", "power_w")


def gpus_from_prometheus(text: str) -> list[dict]:
    """``appliance_gpu_<key>{gpu="0",name="..."} value`` lines, gathered per GPU; a GPU's processes (lines with a
    ``pid`` label) under ``processes``."""
    found: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.startswith("appliance_gpu_") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels_text, _, value = rest.rpartition("}")
        labels = dict(part.split("=", 1) for part in labels_text.split(",") if "=" in part)
        labels = {k.strip(): v.strip().strip('"') for k, v in labels.items()}
        if "gpu" not in labels:
            continue
        gpu = found.setdefault(labels["gpu"], {"gpu": f"gpu{labels['gpu']}", "index": labels["gpu"],
                                               "name": labels.get("name", ""), "processes": []})
        try:
            number_ = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        key = name.removeprefix("appliance_gpu_")
        if "pid" in labels:
            gpu["processes"].append({"pid": int(labels["pid"]), key: number_})
            continue
        gpu[key] = number_
        gpu["name"] = gpu["name"] or labels.get("name", "")
    for gpu in found.values():
        if gpu.get("memory_total_bytes"):
            gpu["memory_pct"] = 100 * gpu.get("memory_used_bytes", 0) / gpu["memory_total_bytes"]
    return [found[k] for k in sorted(found, key=lambda k: int(k) if k.isdigit() else k)]


class GpuHistory:
    """Each GPU's recent figures, shared by the Overview's box and the GPU view."""

    def __init__(self):
        self.points: dict[str, dict[str, deque]] = {}
        self.latest: list[dict] = []

    def add(self, gpus: list[dict], now: float) -> None:
        self.latest = gpus
        for g in gpus:
            hist = self.points.setdefault(g["gpu"], {k: deque(maxlen=HISTORY) for k in ("time", *FIGURES)})
            hist["time"].append(now)
            for k in FIGURES:
                hist[k].append(g.get(k))

    def of(self, gpu: str) -> dict[str, deque]:
        return self.points.get(gpu, {})


def gpu_line(g: dict, hist: dict, width: int) -> str:
    """One GPU on one line: index (and name, when there is room), utilisation gauge and trend, memory,
    temperature, power."""
    util, mem, temp, power = g.get("utilization_pct"), g.get("memory_pct"), g.get("temperature_c"), g.get("power_w")
    wide = width >= 50
    name = f" {g.get('name', '')[:16]}" if wide else ""
    trend = f" {sparkline([v or 0 for v in hist.get('utilization_pct', [])], 8)}" if wide else ""
    watts = f" {number(power)}W" if power is not None and width >= 40 else ""
    return (f"{g.get('index', '?')}{name} {bar((util or 0) / 100, 8 if wide else 6)} {number(util or 0):>3}%{trend}"
            f" mem {number(round(mem or 0))}% {number(temp or 0)}C{watts}")


def gpu_block(g: dict) -> str:
    """A GPU in full, for the GPU view: every figure and its processes."""
    used, total = g.get("memory_used_bytes"), g.get("memory_total_bytes")
    lines = [f"[b]GPU {g.get('index')}[/b] {g.get('name', '')}   util {number(g.get('utilization_pct') or 0)}%   "
             f"mem {size(used)} / {size(total)}   temp {number(g.get('temperature_c') or 0)} C   "
             f"power {number(g.get('power_w') or 0)} / {number(g.get('power_limit_w') or 0)} W"
             + ("   [b red]throttled[/]" if g.get("throttled") else "")
             + (f"   [b red]{number(g['ecc_uncorrected'])} ECC errors[/]" if g.get("ecc_uncorrected") else "")]
    procs = g.get("processes") or []
    lines.append("  processes: " + ("  ".join(f"pid {p['pid']} {size(p.get('process_memory_bytes'))}"
                                              for p in procs) if procs else "[dim]none[/]"))
    return "\n".join(lines)
