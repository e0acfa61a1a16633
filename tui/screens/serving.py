"""Serving: deployments, active version and provider, latency, batching, and the recent predictions."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from ..widgets.format import bar, cell, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen


class ServingScreen(AreaScreen):
    AREA = "serving"
    EVENTS = ("deployment.", "model.alias")

    def body(self) -> ComposeResult:
        yield Static(id="serving-missing", classes="missing")
        yield PagedTable([Column("name", "Deployment"), Column("target", "Model"), Column("version", "Ver"),
                          Column("state", "State", lambda r: state(r.get("state"))), Column("provider", "Provider"),
                          Column("requests", "Reqs"), Column("failures", "Fail"), Column("p50_ms", "p50 ms"),
                          Column("p99_ms", "p99 ms"), Column("max_batch_size", "Batch"),
                          Column("shadow", "Shadow")], id="deployments")
        yield Static(id="latency", classes="box")
        yield Static("Recent predictions", classes="heading")
        yield PagedTable([Column("ts", "When (UTC)", lambda r: cell(r.get("ts"))[:23]),
                          Column("version", "Ver"), Column("request_id", "Request"), Column("row_index", "Row"),
                          Column("latency_us", "µs"), Column("shadow", "Shadow"), Column("outputs", "Outputs")],
                         id="predictions")

    async def fetch(self) -> None:
        listing = await self.section(self.query_one("#serving-missing", Static), "/deployments")
        if listing is None:
            return
        self.query_one("#deployments", PagedTable).show(listing.get("deployments") or [])
        self._load_selected()

    async def _selected(self) -> None:
        dep = self.query_one("#deployments", PagedTable).selected
        box = self.query_one("#latency", Static)
        if dep is None:
            box.update("[dim]no deployments[/]")
            return
        p50, p99 = dep.get("p50_ms"), dep.get("p99_ms")
        top = max(p99 or 0, 1e-9)
        box.update(f"[b]{dep['name']}[/b] → {cell(dep.get('target'))} v{cell(dep.get('version'))} on "
                   f"{cell(dep.get('provider'))}   batch ≤ {cell(dep.get('max_batch_size'))}, wait ≤ "
                   f"{cell(dep.get('max_queue_delay_us'))} µs\n"
                   f"  p50 {bar((p50 or 0) / top, 30)} {cell(p50)} ms\n"
                   f"  p99 {bar((p99 or 0) / top, 30)} {cell(p99)} ms"
                   + (f"\n  [red]{cell(dep.get('error'))}[/]" if dep.get("error") else ""))
        predictions = await self.api.get("/predictions", deployment=dep["name"], limit=100)
        self.query_one("#predictions", PagedTable).show(predictions)

    @on(DataTable.RowHighlighted, "#deployments")
    def _moved(self) -> None:
        self._load_selected()

    @work(exclusive=True, exit_on_error=False, group="selected")
    async def _load_selected(self) -> None:
        await self._selected()
