"""The event log (filterable by type) and the daemon's own log, each followed live; ``q`` or esc goes back."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

from ..widgets.format import ago, fields
from ..widgets.table import Column, PagedTable
from .modals import Detail

#: Lines of the daemon's log read at most (its tail).
TAIL_BYTES = 512 * 1024


class EventLog(Screen):
    """Persisted events, newest first; the box on top filters by type prefix (``alert.``, ``job.failed``)."""

    BINDINGS = [Binding("escape,q", "back", "Back"), Binding("r", "reload", "Refresh")]

    def __init__(self, type_prefix: str = ""):
        super().__init__()
        self.type_prefix = type_prefix

    def compose(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in tests
        yield Static("[b]Events[/b] [dim](type a prefix: alert. job.failed deployment.; enter opens one)[/]",
                     classes="heading")
        yield Input(self.type_prefix, placeholder="event type prefix (empty: every type)", id="event-type")
        yield PagedTable([Column("id", "#"), Column("time", "When", lambda r: ago(r.get("time"), now()), live=True),
                          Column("type", "Type"), Column("subject", "Subject"), Column("data", "Data")],
                         id="event-list", title="event", page=100)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(2.0, self.reload)
        self.set_interval(1.0, lambda: self.query_one(PagedTable).tick())
        self.query_one(PagedTable).focus()
        self.reload()

    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.reload()

    @on(Input.Submitted, "#event-type")
    def _typed(self, event: Input.Submitted) -> None:
        self.type_prefix = event.value.strip()
        self.query_one(PagedTable).focus()
        self.reload()

    @on(PagedTable.RowSelected)
    def _open(self, event: PagedTable.RowSelected) -> None:
        row = self.query_one(PagedTable).selected
        if row:
            self.app.push_screen(Detail(f"Event {row.get('id')}", fields(row)))

    @work(exclusive=True, exit_on_error=False, group="events-page")
    async def reload(self) -> None:
        # The daemon filters by exact type; a prefix is filtered here, over the newest thousand.
        events = await self.app.api.get("/events", limit=1000)
        wanted = [e for e in reversed(events) if str(e.get("type", "")).startswith(self.type_prefix)]
        self.query_one(PagedTable).show(wanted)


class DaemonLog(Screen):
    """The tail of ``<home>/logs/daemon.log``, followed (the dashboard runs beside the daemon's home)."""

    BINDINGS = [Binding("escape,q", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield Static(id="daemon-log-head", classes="heading")
        yield Log(id="daemon-log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.read_to = 0
        self.log_path = Path(self.app.home) / "logs" / "daemon.log" if self.app.home else None
        self.query_one("#daemon-log-head", Static).update(f"[b]Daemon log[/b] [dim]{self.log_path or 'unknown home'}[/]")
        self.set_interval(1.0, self.follow)
        self.follow()

    def action_back(self) -> None:
        self.dismiss()

    def follow(self) -> None:
        log = self.query_one(Log)
        if self.log_path is None or not self.log_path.exists():
            if self.read_to == 0:
                log.write_line("no daemon log here yet")
                self.read_to = -1
            return
        with self.log_path.open("rb") as f:
            end = f.seek(0, 2)
            if end < self.read_to:  # rotated or truncated: start again
                self.read_to = 0
            start = max(self.read_to, end - TAIL_BYTES) if self.read_to <= 0 else self.read_to
            f.seek(start)
            chunk = f.read(end - start)
        self.read_to = end
        if chunk:
            log.write(chunk.decode("utf-8", "replace"))
