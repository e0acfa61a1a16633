"""Monitoring: monitors (drift per feature, quality, performance, bias) and alerts, which can be acknowledged."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ..widgets.format import ago, cell, clock, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Confirm, Detail


class MonitoringScreen(AreaScreen):
    AREA = "monitoring"
    EVENTS = ("alert.", "monitor.")
    BINDINGS = [Binding("a", "acknowledge", "Acknowledge alert"), Binding("enter", "details", "Monitor runs")]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static("Monitors", classes="heading")
        yield Static(id="monitors-missing", classes="missing")
        yield PagedTable([Column("name", "Monitor"), Column("kind", "Kind"),
                          Column("every_s", "Every s"),
                          Column("status", "Last run", lambda r: state((r.get("last_run") or {}).get("status"))),
                          Column("ran", "At", lambda r: ago((r.get("last_run") or {}).get("time"), now())),
                          Column("checks", "Checks", lambda r: _checks(r.get("last_run")))],
                         id="monitors")
        yield Static("Alerts", classes="heading")
        yield Static(id="alerts-missing", classes="missing")
        yield PagedTable([Column("id", "Alert"), Column("rule", "Rule"), Column("subject", "Subject"),
                          Column("severity", "Severity"), Column("state", "State", lambda r: state(r.get("state"))),
                          Column("count", "N"), Column("message", "Message"),
                          Column("last_seen", "Seen", lambda r: ago(r.get("last_seen"), now()))],
                         id="alerts")

    async def fetch(self) -> None:
        monitors = await self.section(self.query_one("#monitors-missing", Static), "/monitors")
        alerts = await self.section(self.query_one("#alerts-missing", Static), "/alerts", limit=1000)
        self.query_one("#monitors", PagedTable).show((monitors or {}).get("monitors") or [])
        self.query_one("#alerts", PagedTable).show(alerts if isinstance(alerts, list) else [])

    def action_details(self) -> None:
        monitor = self.query_one("#monitors", PagedTable).selected
        if monitor:
            self._runs(monitor["name"])

    @work(exclusive=True, exit_on_error=False, group="detail")
    async def _runs(self, name: str) -> None:
        """A monitor's recent runs: each check (drift per feature, quality, bias...) and each value it measured."""
        got = await self.api.get(f"/monitors/{name}", limit=5)
        lines = [f"kind {got.get('kind')}   every {cell(got.get('every_s'))} s"]
        for run in got.get("runs") or []:
            lines += ["", f"[b]run {run.get('id')}[/b] {state(run.get('status'))} {clock(run.get('time'))}"
                      + (f"  [red]{cell(run.get('error'))}[/]" if run.get("error") else "")]
            for c in run.get("checks") or []:
                mark = "[red]FIRING[/]" if c.get("firing") else "[green]ok[/]"
                lines.append(f"  {mark:<6} {cell(c.get('rule'))}: {cell(c.get('message'))}")
            for v in (run.get("values") or [])[:20]:
                where = ",".join(f"{k}={x}" for k, x in (v.get("labels") or {}).items())
                lines.append(f"    {cell(v.get('metric'))}{'{' + cell(where) + '}' if where else ''} = "
                             f"{cell(v.get('value'))}")
        self.app.push_screen(Detail(f"Monitor {name}", "\n".join(lines)))

    def action_acknowledge(self) -> None:
        alert = self.query_one("#alerts", PagedTable).selected
        if alert is None:
            self.notify("no alert selected", severity="warning")
            return
        if not self.allowed(f"acknowledging alert {alert.get('id')}"):
            return
        if alert.get("state") != "open":
            self.notify(f"alert {alert['id']} is {alert.get('state')}; only open alerts need acknowledging",
                        severity="warning")
            return
        self.app.push_screen(Confirm(f"Acknowledge alert {alert['id']} ({cell(alert.get('message'))})?"),
                             lambda yes: yes and self._ack(alert["id"]))

    @work(exit_on_error=False, group="action")
    async def _ack(self, alert_id: int) -> None:
        await self.api.post(f"/alerts/{alert_id}/ack", {"by": "tui"})
        self.notify(f"alert {alert_id} acknowledged", title="Done")
        self.reload()


def _checks(last_run: dict | None) -> str:
    """The checks of a monitor's last run that fired, by name (drift per feature, quality, bias...)."""
    checks = (last_run or {}).get("checks") or []
    if isinstance(checks, dict):
        checks = [{"name": k, **(v if isinstance(v, dict) else {"firing": v})} for k, v in checks.items()]
    firing = [str(c.get("rule", c.get("name", "?"))) for c in checks if isinstance(c, dict) and c.get("firing")]
    return ", ".join(firing) if firing else ("ok" if checks else "-")
