"""Experiments: runs with sort and filter, their metric curves, and runs compared (overlaid and side by side).

The chart shows the metrics a person chooses (``v``); until then, validation metrics first, then training ones,
then the rest, with system metrics (CPU, memory) last: they are many and rarely the question. Runs marked with
``m`` are overlaid on the first chosen metric; ``d`` lists what differs between the two last marked.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from ..widgets.format import ago, cell, fields, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Detail, Prompt

#: The runs API has no ``before``: the newest this many are listed and filtered (the daemon's own maximum).
RUNS_CAP = 10_000
PAGE = 50  # a screen shows ~30 rows; the rest comes when the cursor reaches the end
#: Curves drawn at once (more is a tangle at 80 columns).
MAX_CURVES = 4


def metric_order(key: str) -> tuple:
    """Validation first, then training, then the rest; system metrics last."""
    rank = 0 if key.startswith("val") else 1 if key.startswith("train") else 3 if key.startswith("system/") else 2
    return rank, key


class ExperimentsScreen(AreaScreen):
    AREA = "experiments"
    EVENTS = ("run.",)
    BINDINGS = [
        Binding("enter", "details", "Run details"),
        Binding("v", "choose_metrics", "Metrics to chart"),
        Binding("m", "mark", "Mark to compare"),
        Binding("d", "compare", "Diff marked runs"),
    ]

    def __init__(self):
        super().__init__()
        self.marked: list[int] = []
        self.chosen: list[str] = []
        #: The metrics the chart shows now, in order (tests and the chart's legend read it).
        self.curves_keys: list[str] = []

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="runs-missing", classes="missing")
        yield PagedTable([Column("mark", "", lambda r: "●" if r.get("id") in self.marked else " "),
                          Column("id", "Run"), Column("experiment", "Experiment"), Column("spec_name", "Spec"),
                          Column("state", "State", lambda r: state(r.get("state"))), Column("epoch", "Epoch"),
                          Column("step", "Step"),
                          Column("created", "Created", lambda r: ago(r.get("created"), now()), live=True)],
                         id="runs", title="run")
        yield Static(id="curves", classes="caption")
        yield PlotextPlot(id="curves-chart")

    async def fetch(self) -> None:
        # One page first, so the screen paints at once however long the history; the rest follows.
        runs = await self.section(self.query_one("#runs-missing", Static), "/runs", limit=PAGE)
        if runs is None:
            return
        table = self.query_one("#runs", PagedTable)
        table.show(runs, more=len(runs) == PAGE)
        self._load_curves()

    @on(PagedTable.NeedMore, "#runs")
    def _more(self, event: PagedTable.NeedMore) -> None:
        self._all_runs(event.table)

    @work(exclusive=True, exit_on_error=False, group="page")
    async def _all_runs(self, table: PagedTable) -> None:
        runs = await self.api.get("/runs", limit=RUNS_CAP)
        table.rows_all = runs
        table.extend([], more=False)

    async def _series(self, run_id: int) -> dict[str, tuple[list[float], list[float]]]:
        points = await self.api.get(f"/runs/{run_id}/metrics", limit=5000)
        by_key: dict[str, tuple[list[float], list[float]]] = {}
        for p in points:
            xs, ys = by_key.setdefault(p["key"], ([], []))
            xs.append(p.get("step") or len(xs))
            ys.append(p["value"])
        return by_key

    async def _curves(self) -> None:
        run = self.query_one("#runs", PagedTable).selected
        caption = self.query_one("#curves", Static)
        chart = self.query_one("#curves-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        if run is None:
            caption.update("[dim]no runs[/]")
            self.curves_keys = []
            chart.refresh()
            return
        series = await self._series(run["id"])
        known = sorted(series, key=metric_order)
        keys = [k for k in self.chosen if k in series] or known[:MAX_CURVES]
        others = [m for m in self.marked if m != run["id"]]
        if others and keys:  # overlay: the first chosen metric of the marked runs beside this one
            for other in others:
                xs, ys = (await self._series(other)).get(keys[0], ([], []))
                if xs:
                    plt.plot(xs, ys, label=f"run {other} {keys[0]}")
        for key in keys:
            xs, ys = series[key]
            plt.plot(xs, ys, label=f"run {run['id']} {key}" if others else key)
        plt.xlabel("step")
        self.curves_keys = keys
        last = "  ".join(f"{k} {cell(series[k][1][-1])}" for k in keys)
        caption.update(f"[b]run {run['id']}[/b] {cell(run.get('spec_name'))} {state(run.get('state'))}  {last}"
                       + (f"\n[dim]also recorded: {', '.join(k for k in known if k not in keys)} (v chooses)[/]"
                          if len(known) > len(keys) else "")
                       if series else f"[b]run {run['id']}[/b]  [dim]no metrics yet[/]")
        chart.refresh()

    @on(DataTable.RowHighlighted, "#runs")
    def _moved(self) -> None:
        self._load_curves()

    @work(exclusive=True, exit_on_error=False, group="curves")
    async def _load_curves(self) -> None:
        await self._curves()

    def action_choose_metrics(self) -> None:
        def given(text: str | None) -> None:
            if text is not None:
                self.chosen = [k.strip() for k in text.split(",") if k.strip()][:MAX_CURVES]
                self._load_curves()

        self.app.push_screen(Prompt("Metrics to chart (comma separated; empty: the usual ones)",
                                    value=", ".join(self.curves_keys)), given)

    def action_mark(self) -> None:
        run = self.query_one("#runs", PagedTable).selected
        if run is None:
            return
        if run["id"] in self.marked:
            self.marked.remove(run["id"])
        else:
            self.marked = [*self.marked[-1:], run["id"]]
        self.query_one("#runs", PagedTable).set_filter(self.query_one("#filter").value)
        self._load_curves()

    def details_runs(self, run: dict) -> None:
        self._details(run["id"])

    @work(exit_on_error=False, group="detail")
    async def _details(self, run_id: int) -> None:
        run = await self.api.get(f"/runs/{run_id}")
        body = fields(run, skip=("metrics", "spec", "artifacts"))
        body += "\n\n[b]metrics[/b]\n" + "\n".join(f"  {k}: {cell(v, width=200)}"
                                                   for k, v in (run.get("metrics") or {}).items())
        self.app.push_screen(Detail(f"Run {run_id}", body))

    def action_compare(self) -> None:
        if len(self.marked) != 2:
            self.notify("mark two runs with m first", severity="warning")
            return
        self._compare(*self.marked)

    @work(exit_on_error=False, group="detail")
    async def _compare(self, a: int, b: int) -> None:
        diff = await self.api.get("/runs/compare", a=a, b=b)
        lines = [f"{'':<36} {'run ' + str(a):<24} {'run ' + str(b):<24}"]
        for section in ("params", "metrics", "environment", "data"):
            entries = diff.get(section) or {}
            if entries:
                lines.append(f"[b]{section}[/b]")
                lines += [f"  {k:<34} {cell(v.get('a'), width=24):<24} {cell(v.get('b'), width=24):<24}"
                          for k, v in entries.items()]
        self.app.push_screen(Detail(f"Run {a} vs run {b}", "\n".join(lines if len(lines) > 1 else
                                                                      [*lines, "no differences"])))
