"""``AreaScreen``: what every area shares: tabs, banner, filter, footer, loading in workers, readonly guard.

A screen implements ``fetch()`` (async, talks to the daemon through ``self.api``) and lists the event types
that make it stale in ``EVENTS``; events arriving in a burst cause one reload, not one per event.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from ..client import NotInstalled
from ..widgets.chrome import LostBanner, NavBar
from ..widgets.table import PagedTable


class AreaScreen(Screen):
    AREA = ""
    #: Event type prefixes that make this screen reload.
    EVENTS: tuple[str, ...] = ()
    #: Reload at most this often while events arrive (seconds).
    DEBOUNCE = 0.5
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("r", "reload", "Refresh"),
        Binding("escape", "back", "Back", show=False),
    ]

    AUTO_FOCUS = "PagedTable"

    def __init__(self):
        super().__init__(id=f"screen-{self.AREA}")
        self._dirty = False

    @property
    def api(self):
        return self.app.api

    def compose(self) -> ComposeResult:
        yield NavBar(self.AREA)
        yield LostBanner()
        yield Input(placeholder="filter (esc clears)", id="filter")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.app.areas[self.AREA] = self
        self.set_interval(self.DEBOUNCE, self._reload_if_dirty)
        self.reload()

    def on_screen_resume(self) -> None:
        if self._dirty:
            self.reload()

    # ------------------------------------------------------------------------------------------ loading

    def reload(self) -> None:
        self._dirty = False
        self._load()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def _load(self) -> None:
        await self.fetch()
        self.app.loaded(self)

    async def fetch(self) -> None:
        """Fetch from the daemon and fill the widgets."""

    def daemon_event(self, event: dict) -> None:
        if event.get("type", "").startswith(self.EVENTS) if self.EVENTS else False:
            self._dirty = True

    def _reload_if_dirty(self) -> None:
        if self._dirty and self.is_current and not self.app.lost:
            self.reload()

    async def section(self, placeholder: Static, path: str, **params):
        """GET ``path``; when its plugin is absent, say so in ``placeholder`` and answer None."""
        try:
            data = await self.api.get(path, **params)
        except NotInstalled:
            placeholder.update(f"[dim]not installed: this daemon has no {path} (its plugin is not loaded)[/]")
            placeholder.display = True
            return None
        placeholder.display = False
        return data

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.report(event.worker.error)

    # ------------------------------------------------------------------------------------------ actions

    def allowed(self, what: str) -> bool:
        """False, with a notice, in read-only mode: every action goes through here."""
        if self.app.readonly:
            self.notify(f"read-only: {what} refused", title="Read-only", severity="warning")
            return False
        return True

    def action_reload(self) -> None:
        self.reload()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("open")
        box.focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("open"):
            box.value = ""
            box.remove_class("open")
            self.focus_table()
        elif isinstance(self.focused, Input):  # leave a box (the online lookup) so keys switch areas again
            self.focus_table()

    def on_data_table_row_selected(self) -> None:
        # The focused table takes enter for itself; its selection is the screen's "details".
        details = getattr(self, "action_details", None)
        if details is not None:
            details()

    def focus_table(self) -> None:
        tables = self.query(PagedTable)
        if tables:
            tables.first().focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        for table in self.query(PagedTable):
            table.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.focus_table()
