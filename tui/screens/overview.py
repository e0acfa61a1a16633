"""Overview: health, GPU gauges and sparklines, running jobs with progress, open alerts, deployments, events.

The event log and the counters repaint on a timer, not per event, so a storm of events costs a few repaints a
second however fast it arrives.
"""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ..client import NotInstalled
from ..widgets.format import ago, bar, cell, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 24) -> str:
    values = list(values)[-width:]
    if not any(values):
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


class OverviewScreen(AreaScreen):
    AREA = "overview"
    EVENTS = ("job.", "deployment.", "alert.", "plugin.", "daemon.", "model.")
    POLL_S = 2.0  # job progress is not an event: poll while something runs

    def __init__(self):
        super().__init__()
        self.gpu_history: dict[str, dict[str, deque]] = {}
        self.rate_history: deque[float] = deque(maxlen=48)
        self._painted_events = -1
        self._seen_at_tick = 0
        self.repaints = 0
        #: Each deployment's request count and when it was read: throughput is the difference between polls.
        self._requests: dict[str, tuple[float, int]] = {}

    def body(self) -> ComposeResult:
        with Horizontal(id="overview-top"):
            yield Static(id="health", classes="box")
            yield Static(id="gpu", classes="box")
        yield Static("Running jobs", classes="heading")
        yield PagedTable([Column("id", "Job"), Column("kind", "Kind"),
                          Column("state", "State", lambda r: state(r.get("state"))),
                          Column("progress", "Progress", lambda r: f"{bar(r.get('progress'), 16)} "
                                                                   f"{int(100 * (r.get('progress') or 0)):3d}%"),
                          Column("message", "Message")], id="running")
        with Horizontal(id="overview-bottom"):
            with Vertical(classes="half"):
                yield Static("Deployments", classes="heading")
                yield Static(id="deployments-missing", classes="missing")
                yield PagedTable([Column("name", "Deployment"), Column("version", "Ver"),
                                  Column("state", "State", lambda r: state(r.get("state"))),
                                  Column("rate", "req/s"), Column("p50_ms", "p50 ms"),
                                  Column("p99_ms", "p99 ms")], id="deployments")
            with Vertical(classes="half"):
                yield Static("Open alerts", classes="heading")
                yield Static(id="alerts-missing", classes="missing")
                yield PagedTable([Column("id", "Alert"), Column("severity", "Severity"),
                                  Column("message", "Message")],
                                 id="alerts")
        yield Static("Events", classes="heading")
        yield Static(id="events", classes="box")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.25, self.paint_events)
        self.set_interval(1.0, self._tick_rate)
        self.set_interval(self.POLL_S, self._poll)

    def _poll(self) -> None:
        if self.is_current and not self.app.lost and self.app.live:
            self.reload()

    def _tick_rate(self) -> None:
        seen = self.app.events_seen
        self.rate_history.append(seen - self._seen_at_tick)
        self._seen_at_tick = seen

    def paint_events(self) -> None:
        """Repaint the event log if events arrived since the last paint (at most four times a second)."""
        if self.app.events_seen == self._painted_events or not self.is_current:
            return
        self._painted_events = self.app.events_seen
        self.repaints += 1
        now = self.app.clock()
        lines = [f"[dim]{ago(e.get('time'), now):>8}[/] {e.get('type', '?'):<24} {cell(e.get('subject'))}"
                 for e in list(self.app.events)[:6]]
        rate = sparkline(self.rate_history)
        self.query_one("#events", Static).update(
            "\n".join(lines or ["[dim]no events yet[/]"]) + f"\n[dim]{self.app.events_seen} events  {rate}[/]")

    async def fetch(self) -> None:
        status = await self.api.get("/status")
        gpus = await self._gpus()
        running = await self.api.get("/jobs", state="running", limit=50)
        deployments = await self.section(self.query_one("#deployments-missing", Static), "/deployments")
        alerts = await self.section(self.query_one("#alerts-missing", Static), "/alerts", state="open")
        self._health(status)
        self._gpu(gpus)
        self.query_one("#running", PagedTable).show(running)
        self.query_one("#deployments", PagedTable).show(self._throughput((deployments or {}).get("deployments", [])))
        self.query_one("#alerts", PagedTable).show(alerts if isinstance(alerts, list) else [])
        self.paint_events()

    def _throughput(self, deployments: list[dict]) -> list[dict]:
        now = self.app.clock()
        out = []
        for d in deployments:
            count = d.get("requests") or 0
            then, before = self._requests.get(d["name"], (None, None))
            rate = (count - before) / (now - then) if then is not None and now > then and count >= before else None
            self._requests[d["name"]] = (now, count)
            out.append({**d, "rate": None if rate is None else round(rate, 1)})
        return out

    async def _gpus(self) -> list[dict]:
        """GPU figures from the monitoring plugin's Prometheus page (the daemon has no other GPU source)."""
        try:
            text = await self.api.get_text("/metrics")
        except NotInstalled:
            return []
        return gpus_from_prometheus(text)

    def _health(self, s: dict) -> None:
        jobs = s.get("jobs") or {}
        plugins = s.get("plugins") or {}
        failed = plugins.get("failed", 0)
        self.query_one("#health", Static).update(
            f"[b]appliance {s.get('version', '?')}[/b]  {'[red]stopping[/]' if s.get('stopping') else '[green]ok[/]'}"
            f"\nup {ago(self.app.clock() - (s.get('uptime_s') or 0), self.app.clock()).removesuffix(' ago')}"
            f"   project {cell(s.get('project'))}"
            f"\nplugins {plugins.get('loaded', 0)} loaded"
            + (f", [red]{failed} failed[/]" if failed else "")
            + "\njobs " + "  ".join(f"{k} {v}" for k, v in sorted(jobs.items())))

    def _gpu(self, gpus: list[dict]) -> None:
        box = self.query_one("#gpu", Static)
        if not gpus:
            box.update("[b]GPU[/b]\n[dim]no GPU reported by the daemon[/]")
            return
        lines = ["[b]GPU[/b]"]
        for g in gpus[:2]:  # the box has room for two; nvidia-smi is the place for eight
            hist = self.gpu_history.setdefault(g["gpu"], {k: deque(maxlen=24) for k in ("util", "temp", "mem")})
            util, temp = g.get("utilization_pct"), g.get("temperature_c")
            mem = (g["memory_used_bytes"] / g["memory_total_bytes"]) if g.get("memory_total_bytes") else None
            for key, value in (("util", util), ("temp", temp), ("mem", None if mem is None else 100 * mem)):
                if value is not None:
                    hist[key].append(value)
            lines.append(f"{g['gpu']} {g.get('name', '')[:24]}")
            lines.append(f" util {bar((util or 0) / 100, 10)} {cell(util):>4}%  {sparkline(hist['util'], 12)}")
            lines.append(f" temp {bar((temp or 0) / 100, 10)} {cell(temp):>4}C  {sparkline(hist['temp'], 12)}")
            lines.append(f" mem  {bar(mem or 0, 10)} {cell(None if mem is None else round(100 * mem)):>4}%  "
                         f"{sparkline(hist['mem'], 12)}")
        box.update("\n".join(lines))


def gpus_from_prometheus(text: str) -> list[dict]:
    """``appliance_gpu_<key>{gpu="0",name="..."} value`` lines, gathered per GPU."""
    found: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.startswith("appliance_gpu_") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels_text, _, value = rest.rpartition("}")
        labels = dict(part.split("=", 1) for part in labels_text.split(",") if "=" in part)
        labels = {k.strip(): v.strip().strip('"') for k, v in labels.items()}
        if "gpu" not in labels or "pid" in labels:
            continue
        gpu = found.setdefault(labels["gpu"], {"gpu": f"gpu{labels['gpu']}", "name": labels.get("name", "")})
        try:
            gpu[name.removeprefix("appliance_gpu_")] = float(value.split()[0])
        except (ValueError, IndexError):
            continue
    return [found[k] for k in sorted(found)]
