"""Serving: deployments, active version and provider, throughput and latency over time, recent predictions,
and a deployment against its shadow (enter on one that has one).

Requests are not events (one per prediction would flood the stream), so the screen polls while it shows; each
poll adds a point to the deployment's history: requests per second (the counter's difference) and p50/p99.
"""

from __future__ import annotations

from collections import deque

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from ..widgets.format import cell, fields, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Detail

#: Points of history kept per deployment (two minutes at the poll interval).
HISTORY = 60


class ServingScreen(AreaScreen):
    AREA = "serving"
    EVENTS = ("deployment.", "model.alias")
    POLL_S = 2.0
    BINDINGS = [Binding("enter", "details", "Deployment / against its shadow")]

    def __init__(self):
        super().__init__()
        #: Per deployment: (time, requests, p50, p99) at each poll.
        self.history: dict[str, deque[tuple[float, int, float | None, float | None]]] = {}

    def body(self) -> ComposeResult:
        yield Static(id="serving-missing", classes="missing")
        yield PagedTable([Column("name", "Deployment"), Column("target", "Model"), Column("version", "Ver"),
                          Column("state", "State", lambda r: state(r.get("state"))), Column("provider", "Provider"),
                          Column("requests", "Reqs"), Column("rate", "req/s"), Column("failures", "Fail"),
                          Column("p50_ms", "p50 ms"), Column("p99_ms", "p99 ms"), Column("max_batch_size", "Batch"),
                          Column("shadow", "Shadow")], id="deployments", title="deployment")
        yield Static(id="latency", classes="caption")
        yield PlotextPlot(id="serving-chart")
        yield Static("Recent predictions", classes="heading")
        yield PagedTable([Column("ts", "When (UTC)", lambda r: cell(r.get("ts"))[:23]),
                          Column("version", "Ver"), Column("request_id", "Request"), Column("row_index", "Row"),
                          Column("latency_us", "µs"), Column("shadow", "Shadow"), Column("outputs", "Outputs")],
                         id="predictions", title="prediction",
                         key=lambda r: (r.get("request_id"), r.get("row_index"), r.get("shadow")))

    async def fetch(self) -> None:
        listing = await self.section(self.query_one("#serving-missing", Static), "/deployments")
        if listing is None:
            return
        now = self.app.clock()
        rows = []
        for d in listing.get("deployments") or []:
            points = self.history.setdefault(d["name"], deque(maxlen=HISTORY))
            points.append((now, d.get("requests") or 0, d.get("p50_ms"), d.get("p99_ms")))
            rows.append({**d, "rate": rate(points)})
        self.query_one("#deployments", PagedTable).show(rows)
        self._load_selected()

    async def _selected(self) -> None:
        dep = self.query_one("#deployments", PagedTable).selected
        box = self.query_one("#latency", Static)
        if dep is None:
            box.update("[dim]no deployments[/]")
            return
        box.update(f"[b]{dep['name']}[/b] → {cell(dep.get('target'))} v{cell(dep.get('version'))} on "
                   f"{cell(dep.get('provider'))}   batch ≤ {cell(dep.get('max_batch_size'))}, wait ≤ "
                   f"{cell(dep.get('max_queue_delay_us'))} µs   {cell(dep.get('rate'))} req/s"
                   + (f"\n[red]{cell(dep.get('error'))}[/]" if dep.get("error") else ""))
        self._chart(dep["name"])
        predictions = await self.api.get("/predictions", deployment=dep["name"], limit=100)
        self.query_one("#predictions", PagedTable).show(predictions)

    def _chart(self, name: str) -> None:
        points = list(self.history.get(name, ()))
        chart = self.query_one("#serving-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        if len(points) < 2:
            plt.title("req/s, p50 and p99 over time: a point every poll, from the second on")
        else:
            t0 = points[-1][0]
            xs = [t - t0 for t, *_ in points]
            rates = [rate(deque(points[: i + 1])) or 0.0 for i in range(len(points))]
            plt.plot(xs, rates, label="req/s")
            for at, label in ((2, "p50 ms"), (3, "p99 ms")):
                pairs = [(x, p[at]) for x, p in zip(xs, points, strict=True) if p[at] is not None]
                if pairs:
                    plt.plot([x for x, _ in pairs], [y for _, y in pairs], label=label, yside="right")
            plt.xlabel("seconds ago")
        chart.refresh()

    def details_deployments(self, dep: dict) -> None:
        self._deployment(dep)

    @work(exit_on_error=False, group="detail")
    async def _deployment(self, dep: dict) -> None:
        """A deployment whole; with a shadow, the two side by side first (the report is read on demand: it joins
        a day of the prediction log)."""
        body = fields(dep)
        if dep.get("shadow"):
            body = shadow_report(await self.api.get(f"/deployments/{dep['name']}/shadow")) + "\n\n" + body
        self.app.push_screen(Detail(f"Deployment {dep['name']}", body))

    @on(DataTable.RowHighlighted, "#deployments")
    def _moved(self) -> None:
        self._load_selected()

    @work(exclusive=True, exit_on_error=False, group="selected")
    async def _load_selected(self) -> None:
        await self._selected()


def shadow_report(r: dict) -> str:
    """``GET /deployments/NAME/shadow`` for a person: agreement, score spread, both models' realized metrics
    and the verdict, with the command that promotes a winning challenger."""
    c, h = r["champion"], r["challenger"]
    lines = [f"[b]Against its shadow[/b] {escape(r['shadow'])}: {escape(c['model'])} v{c['version']} (champion) vs "
             f"{escape(h['model'])} v{h['version']} (challenger), output {escape(r['output'])}"]
    if not r["pairs"]:
        return "\n".join([*lines, "  no request answered by both yet"])
    lines.append(f"  {r['pairs']} request(s) answered by both; they decide alike on {r['agreement']:.1%}, mean "
                 f"|difference| {r['mean_abs_difference']:.4g}")
    rows = [("", "champion", "challenger")]
    rows += [(f"score {k}", _figure(c["scores"][k]), _figure(h["scores"][k])) for k in ("mean", "p10", "p50", "p90")]
    for metric, value in (c.get("metrics") or {}).items():
        rows.append((metric, _figure(value), _figure((h.get("metrics") or {}).get(metric))))
    lines += ["  " + "  ".join(x.ljust(w) for x, w in zip(row, (14, 10, 10), strict=True)) for row in rows]
    lines.append(f"  labels on {r['labeled']} of them. {escape(r['verdict'])}")
    if r.get("promote"):
        lines.append(f"  [b]promote it:[/b] {escape(r['promote'])}")
    return "\n".join(lines)


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def rate(points: deque) -> float | None:
    """Requests per second between the last two polls (None until there are two)."""
    if len(points) < 2:
        return None
    (t0, n0, *_), (t1, n1, *_) = points[-2], points[-1]
    return round((n1 - n0) / (t1 - t0), 1) if t1 > t0 and n1 >= n0 else None
