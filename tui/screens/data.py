"""Data: sources, batches, the quarantine with the rule each row failed, and held batches to approve or reject."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from ..widgets.format import ago, fields, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Confirm, Detail


class DataScreen(AreaScreen):
    AREA = "data"
    EVENTS = ("ingest.",)
    MUTATING = frozenset({"decide"})
    BINDINGS = [
        Binding("a", "decide(True)", "Approve held batch"),
        Binding("x", "decide(False)", "Reject held batch"),
        Binding("enter", "details", "Details of the row"),
    ]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="data-missing", classes="missing")
        with Horizontal(id="data-top"):
            with Vertical(classes="half"):
                yield Static("Sources", classes="heading")
                yield PagedTable([Column("name", "Source"), Column("kind", "Kind"), Column("rows", "Rows"),
                                  Column("quarantined_rows", "Quarantined"), Column("batches", "Batches"),
                                  Column("held", "Held")], id="sources", title="source")
            with Vertical(classes="half"):
                yield Static("Batches", classes="heading")
                yield PagedTable([Column("id", "Batch"), Column("source", "Source"),
                                  Column("state", "State", lambda r: state(r.get("state"))),
                                  Column("rows_in", "In"), Column("accepted", "OK"),
                                  Column("quarantined", "Bad"),
                                  Column("time", "When", lambda r: ago(r.get("time"), now()), live=True)],
                                 id="batches", title="batch")
        yield Static("Quarantine", classes="heading", id="quarantine-title")
        yield PagedTable([Column("batch_id", "Batch"), Column("row", "Row"), Column("column", "Column"),
                          Column("rule", "Rule"), Column("expected", "Expected"), Column("got", "Got")],
                         id="quarantine", title="quarantined row", key=lambda r: (r.get("batch_id"), r.get("row"),
                                                                                  r.get("column"), r.get("rule")))

    async def fetch(self) -> None:
        sources = await self.section(self.query_one("#data-missing", Static), "/sources")
        if sources is None:
            return
        batches = await self.api.get("/batches", limit=1000)
        self.query_one("#sources", PagedTable).show(sources)
        self.query_one("#batches", PagedTable).show(batches)
        self._load_quarantine()

    async def _quarantine(self) -> None:
        source = self.query_one("#sources", PagedTable).selected
        if source is None:
            return
        rows = await self.api.get(f"/sources/{source['name']}/quarantine", limit=1000)
        self.query_one("#quarantine-title", Static).update(f"Quarantine of {source['name']} (first 1000 rows)")
        self.query_one("#quarantine", PagedTable).show(rows)

    @on(DataTable.RowHighlighted, "#sources")
    def _source_moved(self) -> None:
        self._load_quarantine()

    @work(exclusive=True, exit_on_error=False, group="quarantine")
    async def _load_quarantine(self) -> None:
        await self._quarantine()

    def details_batches(self, batch: dict) -> None:
        reasons = "\n".join(f"  • {r}" for r in batch.get("reasons") or []) or "  (none)"
        self.app.push_screen(Detail(f"Batch {batch.get('id')}",
                                    f"{fields(batch, skip=('reasons',))}\n\n[b]reasons[/b]:\n{reasons}"))

    def details_quarantine(self, row: dict) -> None:
        self.app.push_screen(Detail(f"Quarantined row {row.get('row')} of batch {row.get('batch_id')}", fields(row)))

    def action_decide(self, approve: bool) -> None:
        verb = "approve" if approve else "reject"
        batch = self.pick("batches", "batch")
        if batch is None:
            return
        if not self.allowed(f"{verb} batch {batch.get('id')}"):
            return
        if batch.get("state") != "held":
            self.notify(f"batch {batch.get('id')} is {batch.get('state')}; only held batches wait for review",
                        severity="warning")
            return
        question = f"{verb.capitalize()} held batch {batch['id']} of {batch.get('source')}?"
        self.app.push_screen(Confirm(question), lambda yes: yes and self._decide(batch["id"], verb))

    @work(exit_on_error=False, group="action")
    async def _decide(self, batch_id: int, verb: str) -> None:
        out = await self.api.post(f"/batches/{batch_id}/{verb}")
        self.notify(f"batch {batch_id} {out.get('state', verb)}", title="Done")
        self.reload()
