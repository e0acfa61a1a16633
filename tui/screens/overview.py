"""Overview: what needs a person first (open alerts, deployments, running jobs), then health, GPUs and events.

At 80x24 the alerts, deployments and running jobs keep their rows; the event log takes what is left (at least
its last lines), never their room. One line per GPU, and "+N more" when the box is full (``u`` shows them all).
The event log and the counters repaint on a timer, not per event, so a storm of events costs a few repaints a
second however fast it arrives.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ..client import NotInstalled
from ..gpu import GpuHistory, gpu_line, gpus_from_prometheus
from ..widgets.format import ago, bar, cell, sparkline, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen


class OverviewScreen(AreaScreen):
    AREA = "overview"
    EVENTS = ("job.", "deployment.", "alert.", "plugin.", "daemon.", "model.")
    POLL_S = 2.0  # job progress and request counts are not events: poll while shown
    BINDINGS = [Binding("u", "gpus", "GPUs in full")]
    #: A tall terminal gives the health and GPU boxes room for a line per GPU of a larger box.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]

    def __init__(self):
        super().__init__()
        self.rate_history: list[float] = []
        self._painted_events = -1
        self._events_text = ""
        self._gpu_text = ""
        self._seen_at_tick = 0
        self.repaints = 0
        #: Each deployment's request count and when it was read: throughput is the difference between polls.
        self._requests: dict[str, tuple[float, int]] = {}

    def body(self) -> ComposeResult:
        with Horizontal(id="overview-top"):
            with Vertical(classes="half"):
                yield Static("Open alerts", classes="heading")
                yield Static(id="alerts-missing", classes="missing")
                yield PagedTable([Column("rule", "Rule"), Column("severity", "Sev"),
                                  Column("message", "Message")], id="alerts", title="alert")
            with Vertical(classes="half"):
                yield Static("Deployments", classes="heading")
                yield Static(id="deployments-missing", classes="missing")
                yield PagedTable([Column("name", "Deployment"), Column("version", "Ver"),
                                  Column("state", "State", lambda r: state(r.get("state"))),
                                  Column("rate", "req/s"), Column("p50_ms", "p50"),
                                  Column("p99_ms", "p99")], id="deployments", title="deployment")
        yield Static("Running jobs", classes="heading")
        yield PagedTable([Column("id", "Job"), Column("kind", "Kind"),
                          Column("progress", "Progress", lambda r: f"{bar(r.get('progress'), 12)} "
                                                                   f"{int(100 * (r.get('progress') or 0)):3d}%"),
                          Column("message", "Message")], id="running", title="job")
        with Horizontal(id="overview-boxes"):
            yield Static(id="health", classes="box")
            yield Static(id="gpu", classes="box")
        yield Static(id="events", classes="box")

    def on_mount(self) -> None:
        super().on_mount()
        self.gpus = GpuHistory()
        self.set_interval(0.25, self.paint_events)
        self.set_interval(1.0, self._tick_rate)

    def _tick_rate(self) -> None:
        seen = self.app.events_seen
        self.rate_history = [*self.rate_history[-47:], seen - self._seen_at_tick]
        self._seen_at_tick = seen

    def tick(self) -> None:
        super().tick()
        self._painted_events = -1  # the ages in the log move on too
        if self.is_current:
            self._gpu(self.gpus.latest)  # fitted to the box as it is now (the terminal may have been resized)

    def paint_events(self) -> None:
        """Repaint the event log if events arrived since the last paint (at most four times a second)."""
        if self.app.events_seen == self._painted_events or not self.is_current:
            return
        self._painted_events = self.app.events_seen
        self.repaints += 1
        now = self.app.clock()
        box = self.query_one("#events", Static)
        room = max(1, box.size.height - 1)  # below its title line
        lines = [f"[dim]{ago(e.get('time'), now):>8}[/] {cell(e.get('type'), width=24):<24} {cell(e.get('subject'))}"
                 for e in list(self.app.events)[:room]]
        rate = sparkline(self.rate_history)
        text = "\n".join([f"[b]Events[/b] [dim]{self.app.events_seen} seen  {rate}  (:events to browse)[/]",
                          *(lines or ["[dim]no events yet[/]"])])
        if text != self._events_text:
            self._events_text = text
            box.update(text, layout=False)  # the box's size is the layout's, not its text's

    async def fetch(self) -> None:
        status = await self.api.get("/status")
        gpus = await self._gpus()
        running = await self.api.get("/jobs", state="running", limit=50)
        deployments = await self.section(self.query_one("#deployments-missing", Static), "/deployments")
        alerts = await self.section(self.query_one("#alerts-missing", Static), "/alerts", state="open")
        self._health(status)
        self.gpus.add(gpus, self.app.clock())
        self.call_after_refresh(self._gpu, gpus)
        self.query_one("#running", PagedTable).show(running)
        self.query_one("#deployments", PagedTable).show(self._throughput((deployments or {}).get("deployments", [])))
        self.query_one("#alerts", PagedTable).show(alerts if isinstance(alerts, list) else [])
        self.paint_events()
        if status.get("project"):
            from .. import settings

            settings.save(self.app.home, project=status["project"])

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
        box = self.query_one("#health", Static)
        room = max(20, box.size.width or 36)
        project = str(s.get("project") or "-")
        if len(project) > room - 8:
            project = "…" + project[-(room - 9):]
        box.update(
            f"[b]appliance {s.get('version', '?')}[/b] {'[red]stopping[/]' if s.get('stopping') else '[green]ok[/]'}"
            f"  up {ago(self.app.clock() - (s.get('uptime_s') or 0), self.app.clock()).removesuffix(' ago')}"
            f"\nproject {cell(project)}"
            f"\nplugins {plugins.get('loaded', 0)} loaded" + (f", [red]{failed} failed[/]" if failed else "")
            + "\njobs " + " ".join(f"{k} {v}" for k, v in sorted(jobs.items())), layout=False)

    def _gpu(self, gpus: list[dict]) -> None:
        box = self.query_one("#gpu", Static)
        if not gpus:
            box.update("[b]GPU[/b] [dim]none reported by the daemon[/]", layout=False)
            return
        room = max(1, box.size.height or 4)  # the content's size (inside the border)
        width = max(20, box.size.width or 36)
        shown = gpus if len(gpus) <= room else gpus[: room - 1]
        lines = [gpu_line(g, self.gpus.of(g["gpu"]), width) for g in shown]
        if len(shown) < len(gpus):
            lines.append(f"[dim]+{len(gpus) - len(shown)} more (u shows every GPU)[/]")
        text = "\n".join(lines)
        if text != self._gpu_text:
            self._gpu_text = text
            box.update(text, layout=False)

    def action_gpus(self) -> None:
        from .gpus import GpuView

        self.app.push_screen(GpuView(self.gpus))
