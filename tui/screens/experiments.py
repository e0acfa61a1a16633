"""Experiments: runs with sort and filter, live metric curves, and two runs compared side by side."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from ..widgets.format import ago, cell, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Detail
from .overview import sparkline

#: The runs API has no ``before``: the newest this many are listed and filtered (the daemon's own maximum).
RUNS_CAP = 10_000
PAGE = 50  # a screen shows ~30 rows; the rest comes when the cursor reaches the end


class ExperimentsScreen(AreaScreen):
    AREA = "experiments"
    EVENTS = ("run.",)
    BINDINGS = [
        Binding("enter", "details", "Run details"),
        Binding("s", "sort", "Sort by column"),
        Binding("m", "mark", "Mark to compare"),
        Binding("c", "compare", "Compare marked"),
    ]

    def __init__(self):
        super().__init__()
        self.marked: list[int] = []

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="runs-missing", classes="missing")
        yield PagedTable([Column("mark", "", lambda r: "●" if r.get("id") in self.marked else " "),
                          Column("id", "Run"), Column("experiment", "Experiment"), Column("spec_name", "Spec"),
                          Column("state", "State", lambda r: state(r.get("state"))), Column("epoch", "Epoch"),
                          Column("step", "Step"),
                          Column("created", "Created", lambda r: ago(r.get("created"), now()))],
                         id="runs")
        yield Static(id="curves", classes="box")

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

    async def _curves(self) -> None:
        run = self.query_one("#runs", PagedTable).selected
        box = self.query_one("#curves", Static)
        if run is None:
            box.update("[dim]no runs[/]")
            return
        series = await self.api.get(f"/runs/{run['id']}/metrics", limit=5000)
        by_key: dict[str, list[float]] = {}
        for point in series:
            by_key.setdefault(point["key"], []).append(point["value"])
        lines = [f"[b]run {run['id']}[/b] {run.get('spec_name')}  {state(run.get('state'))}"]
        for key, values in sorted(by_key.items())[:6]:
            lines.append(f"  {key:<22} {sparkline(values, 40)} {cell(values[-1])}")
        box.update("\n".join(lines if by_key else [*lines, "  [dim]no metrics yet[/]"]))

    @on(DataTable.RowHighlighted, "#runs")
    def _moved(self) -> None:
        self._load_curves()

    @work(exclusive=True, exit_on_error=False, group="curves")
    async def _load_curves(self) -> None:
        await self._curves()

    def action_sort(self) -> None:
        table = self.query_one("#runs", PagedTable)
        table.sort_by(table.spec[table.cursor_column].key)

    def action_mark(self) -> None:
        run = self.query_one("#runs", PagedTable).selected
        if run is None:
            return
        if run["id"] in self.marked:
            self.marked.remove(run["id"])
        else:
            self.marked = [*self.marked[-1:], run["id"]]
        self.query_one("#runs", PagedTable).set_filter(self.query_one("#filter").value)

    def action_details(self) -> None:
        run = self.query_one("#runs", PagedTable).selected
        if run:
            self._details(run["id"])

    @work(exit_on_error=False, group="detail")
    async def _details(self, run_id: int) -> None:
        run = await self.api.get(f"/runs/{run_id}")
        lines = [f"{k}: {cell(v)}" for k, v in run.items() if k not in ("metrics", "spec", "artifacts")]
        lines += ["", "[b]metrics[/b]", *(f"  {k}: {cell(v)}" for k, v in (run.get("metrics") or {}).items())]
        self.app.push_screen(Detail(f"Run {run_id}", "\n".join(lines)))

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
                lines += [f"  {k[:34]:<34} {cell(v.get('a')):<24} {cell(v.get('b')):<24}"
                          for k, v in entries.items()]
        self.app.push_screen(Detail(f"Run {a} vs run {b}", "\n".join(lines if len(lines) > 1 else
                                                                      [*lines, "no differences"])))
