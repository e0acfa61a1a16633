"""Monitoring: monitors, drift per feature (now and over time), and every alert, resolved ones included.

The drift table is the last run of the first drift monitor: each column's test, statistic and verdict; the chart
shows the statistic of the feature under the cursor over that monitor's recent runs. ``a`` acknowledges an open
alert with a note.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from ..widgets.format import ago, cell, clock, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Confirm, Detail, Prompt

#: Runs of the drift monitor read for the history (one chart point each).
DRIFT_RUNS = 30


class MonitoringScreen(AreaScreen):
    AREA = "monitoring"
    EVENTS = ("alert.", "monitor.")
    MUTATING = frozenset({"acknowledge"})
    BINDINGS = [Binding("a", "acknowledge", "Acknowledge alert"), Binding("enter", "details", "Monitor runs")]

    def __init__(self):
        super().__init__()
        #: Per drift monitor run (oldest first): its time and each column's statistic.
        self.drift_history: list[tuple[float, dict[str, float]]] = []
        self.drift_monitor: str | None = None

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="monitors-missing", classes="missing")
        with Horizontal(id="monitoring-top"):
            with Vertical(classes="half"):
                yield Static("Monitors", classes="heading")
                yield PagedTable([Column("name", "Monitor"), Column("kind", "Kind"),
                                  Column("status", "Last", lambda r: state((r.get("last_run") or {}).get("status"))),
                                  Column("ran", "At", lambda r: ago((r.get("last_run") or {}).get("time"), now()),
                                         live=True),
                                  Column("checks", "Firing", lambda r: _checks(r.get("last_run")))],
                                 id="monitors", title="monitor")
            with Vertical(classes="half"):
                yield Static("Drift per feature", classes="heading", id="drift-title")
                yield PagedTable([Column("column", "Feature"), Column("test", "Test"),
                                  Column("statistic", "Statistic"),
                                  Column("drifted", "Drifted", lambda r: "[b red]yes[/]" if r.get("drifted") else
                                         "no")], id="drift", title="feature drift", key=lambda r: r.get("column"))
        yield PlotextPlot(id="drift-chart")
        yield Static("Alerts (all, resolved too)", classes="heading")
        yield PagedTable([Column("id", "Alert"), Column("rule", "Rule"), Column("severity", "Severity"),
                          Column("state", "State", lambda r: state(r.get("state"))),
                          Column("count", "N"), Column("message", "Message"),
                          Column("last_seen", "Seen", lambda r: ago(r.get("last_seen"), now()), live=True),
                          Column("ack_note", "Note")], id="alerts", title="alert")

    async def fetch(self) -> None:
        monitors = await self.section(self.query_one("#monitors-missing", Static), "/monitors")
        if monitors is None:
            return
        listing = monitors.get("monitors") or []
        alerts = await self.api.get("/alerts", state="all", limit=1000)
        self.query_one("#monitors", PagedTable).show(listing)
        self.query_one("#alerts", PagedTable).show(alerts if isinstance(alerts, list) else [])
        drift = next((m["name"] for m in listing if m.get("kind") == "drift"), None)
        await self._drift(drift)

    async def _drift(self, name: str | None) -> None:
        self.drift_monitor = name
        table = self.query_one("#drift", PagedTable)
        if name is None:
            self.drift_history = []
            table.show([])
            return
        got = await self.api.get(f"/monitors/{name}", limit=DRIFT_RUNS)
        runs = [r for r in got.get("runs") or [] if r.get("values")]
        self.drift_history = [(r.get("time") or 0.0, drift_values(r)[0]) for r in reversed(runs)]
        last_stats, last_rows = drift_values(runs[0]) if runs else ({}, [])
        self.query_one("#drift-title", Static).update(
            f"Drift per feature ({name}, {ago(runs[0].get('time'), self.app.clock()) if runs else 'no run yet'})")
        table.show(last_rows)
        self._chart()

    def _chart(self) -> None:
        chart = self.query_one("#drift-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        row = self.query_one("#drift", PagedTable).selected
        if row is not None and self.drift_history:
            t_last = self.drift_history[-1][0]
            pairs = [(t - t_last, s[row["column"]]) for t, s in self.drift_history if row["column"] in s]
            if pairs:
                plt.plot([x for x, _ in pairs], [y for _, y in pairs], label=f"{row['column']} ({row.get('test')})")
                plt.xlabel("seconds before the last run")
        chart.refresh()

    @on(DataTable.RowHighlighted, "#drift")
    def _feature_moved(self) -> None:
        self._chart()

    def details_monitors(self, monitor: dict) -> None:
        self._runs(monitor["name"])

    @work(exclusive=True, exit_on_error=False, group="detail")
    async def _runs(self, name: str) -> None:
        """A monitor's recent runs: each check (drift per feature, quality, bias...) and each value it measured."""
        got = await self.api.get(f"/monitors/{name}", limit=5)
        lines = [f"kind {got.get('kind')}   every {cell(got.get('every_s'))} s"]
        for run in got.get("runs") or []:
            lines += ["", f"[b]run {run.get('id')}[/b] {state(run.get('status'))} {clock(run.get('time'))}"
                      + (f"  [red]{cell(run.get('error'), width=500)}[/]" if run.get("error") else "")]
            for c in run.get("checks") or []:
                mark = "[red]FIRING[/]" if c.get("firing") else "[green]ok[/]"
                lines.append(f"  {mark:<6} {cell(c.get('rule'))}: {cell(c.get('message'), width=500)}")
            for v in (run.get("values") or [])[:40]:
                where = ",".join(f"{k}={x}" for k, x in (v.get("labels") or {}).items())
                lines.append(f"    {cell(v.get('metric'))}{'{' + cell(where, width=200) + '}' if where else ''} = "
                             f"{cell(v.get('value'), v.get('metric') or '')}")
        self.app.push_screen(Detail(f"Monitor {name}", "\n".join(lines)))

    def action_acknowledge(self) -> None:
        alert = self.pick("alerts", "alert")
        if alert is None or not self.allowed(f"acknowledging alert {alert.get('id')}"):
            return
        if alert.get("state") != "open":
            self.notify(f"alert {alert['id']} is {alert.get('state')}; only open alerts need acknowledging",
                        severity="warning")
            return

        def noted(note: str | None) -> None:
            if note is not None:
                self.app.push_screen(Confirm(f"Acknowledge alert {alert['id']} ({cell(alert.get('message'))})?"),
                                     lambda yes: yes and self._ack(alert["id"], note))

        self.app.push_screen(Prompt(f"Acknowledge alert {alert['id']}: a note for whoever looks next",
                                    placeholder="what you found or did (optional)"), noted)

    @work(exit_on_error=False, group="action")
    async def _ack(self, alert_id: int, note: str) -> None:
        await self.api.post(f"/alerts/{alert_id}/ack", {"by": "tui", **({"note": note} if note else {})})
        self.notify(f"alert {alert_id} acknowledged", title="Done")
        self.reload()


def drift_values(run: dict) -> tuple[dict[str, float], list[dict]]:
    """One drift run's values: each column's statistic, and a row per column for the table."""
    stats: dict[str, float] = {}
    rows: dict[str, dict] = {}
    for v in run.get("values") or []:
        column = (v.get("labels") or {}).get("column")
        if not column:
            continue
        row = rows.setdefault(column, {"column": column, "test": None, "statistic": None, "drifted": None})
        if v.get("metric") == "drift_statistic":
            row["statistic"], row["test"] = v.get("value"), (v.get("labels") or {}).get("test")
            stats[column] = v.get("value")
        elif v.get("metric") == "column_drifted":
            row["drifted"] = bool(v.get("value"))
    return stats, sorted(rows.values(), key=lambda r: (not r["drifted"], r["column"]))


def _checks(last_run: dict | None) -> str:
    """The checks of a monitor's last run that fired, by name (drift per feature, quality, bias...)."""
    checks = (last_run or {}).get("checks") or []
    firing = [str(c.get("rule", "?")) for c in checks if isinstance(c, dict) and c.get("firing")]
    return ", ".join(firing) if firing else ("ok" if checks else "-")
