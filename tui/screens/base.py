"""``AreaScreen``: what every area shares: tabs, banner, filter and command lines, footer, loading in workers,
the same verb on the same key, and the read-only guard.

A screen implements ``fetch()`` (async, talks to the daemon through ``self.api``) and lists the event types
that make it stale in ``EVENTS``; events arriving in a burst cause one reload, not one per event. A screen with
``POLL_S`` also reloads on that timer while it shows (serving counters and job progress are not events).
Actions that change the box are named in ``MUTATING``: read-only mode hides their keys and refuses them.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from ..client import NotInstalled
from ..widgets.chrome import LineInput, LostBanner, NavBar
from ..widgets.format import fields
from ..widgets.table import PagedTable
from .modals import Detail


class AreaScreen(Screen):
    AREA = ""
    #: Event type prefixes that make this screen reload.
    EVENTS: tuple[str, ...] = ()
    #: Reload at most this often while events arrive (seconds).
    DEBOUNCE = 0.5
    #: Reload on a timer while shown (seconds); None: on events only.
    POLL_S: float | None = None
    #: Actions that change the box: hidden and refused in read-only mode.
    MUTATING: frozenset[str] = frozenset()
    BINDINGS = [
        # Priority: the app runs these as it takes the key, so the keys typed right after already find the line
        # open and focused (otherwise they are on their way to the table, and lost).
        Binding("slash", "filter", "Filter", priority=True),
        Binding("colon", "command", "Command", priority=True),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
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
        yield LineInput(placeholder="filter (enter keeps it, esc clears)", id="filter")
        yield from self.body()
        yield LineInput(placeholder=":jobs failed  :run nightly  :job materialize  :events alert  :theme  :help",
                        id="command")
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.app.areas[self.AREA] = self
        self.set_interval(self.DEBOUNCE, self._reload_if_dirty)
        self.set_interval(1.0, self.tick)
        if self.POLL_S:
            self.set_interval(self.POLL_S, self._poll)
        self.watch(self.app, "lost", lambda lost: self.set_class(bool(lost), "-stale"))
        self.reload()

    def on_screen_resume(self) -> None:
        if self._dirty:
            self.reload()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Read-only mode: the keys that change the box are neither shown nor run."""
        return not (self.app.readonly and action in self.MUTATING)

    # ------------------------------------------------------------------------------------------ loading

    def reload(self) -> None:
        self._dirty = False
        self._load()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def _load(self) -> None:
        await self.fetch()
        self.query_one(NavBar).loaded_at = self.app.clock()
        self.query_one(NavBar).draw()
        self.app.loaded(self)

    async def fetch(self) -> None:
        """Fetch from the daemon and fill the widgets."""

    def daemon_event(self, event: dict) -> None:
        if event.get("type", "").startswith(self.EVENTS) if self.EVENTS else False:
            self._dirty = True

    def _reload_if_dirty(self) -> None:
        if self._dirty and self.is_current and not self.app.lost:
            self.reload()

    def _poll(self) -> None:
        if self.is_current and not self.app.lost and self.app.live:
            self.reload()

    def tick(self) -> None:
        """Once a second while shown: ages age."""
        if self.is_current:
            for table in self.query(PagedTable):
                table.tick()

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
        """False, with a notice, in read-only mode (for actions reached other than by their key: a command)."""
        if self.app.readonly:
            self.notify(f"read-only: {what} refused", title="Read-only", severity="warning")
            return False
        return True

    def focused_table(self) -> PagedTable | None:
        return self.focused if isinstance(self.focused, PagedTable) else None

    def pick(self, table_id: str, what: str) -> dict | None:
        """The row under the cursor of ``table_id``, when that table has the focus: an action acts on the table
        the user is looking at, never on another table's stale cursor."""
        focused = self.focused_table()
        tables = self.query(PagedTable)
        if focused is None and len(tables) == 1:
            focused = tables.first()
        if focused is None or focused.id != table_id:
            self.notify(f"select a {what} first (tab moves between tables)", severity="warning")
            return None
        if focused.selected is None:
            self.notify(f"no {what} selected", severity="warning")
        return focused.selected

    def action_reload(self) -> None:
        self.reload()

    def action_details(self) -> None:
        """``enter`` from anywhere on the screen: open the focused table's row."""
        table = self.focused_table()
        if table is not None and table.selected is not None:
            table.action_select_cursor()

    def action_sort(self) -> None:
        if table := self.focused_table():
            table.next_sort()

    def action_reverse_sort(self) -> None:
        if table := self.focused_table():
            table.reverse_sort()

    def _typed_into_a_box(self, char: str) -> bool:
        """A priority key pressed while a box has the focus is the box's character."""
        if isinstance(self.focused, Input):
            self.focused.insert_text_at_cursor(char)
            return True
        return False

    def action_filter(self) -> None:
        if not self._typed_into_a_box("/"):
            self.query_one("#filter", LineInput).open(self.query_one("#filter", LineInput).value)

    def action_command(self) -> None:
        if not self._typed_into_a_box(":"):
            self.query_one("#command", LineInput).open()

    def action_back(self) -> None:
        box = self.query_one("#filter", LineInput)
        command = self.query_one("#command", LineInput)
        if command.has_class("open"):
            command.close()
            self.focus_table()
        elif box.has_class("open") or box.value:
            box.value = ""
            box.close()
            self.focus_table()
        elif isinstance(self.focused, Input):  # leave a box (the online lookup) so keys switch areas again
            self.focus_table()

    def apply_filter(self, text: str) -> None:
        box = self.query_one("#filter", LineInput)
        box.value = text
        box.set_class(bool(text), "open")
        for table in self.query(PagedTable):
            table.set_filter(text)

    @on(DataTable.RowSelected)
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        # Enter on a table opens what its row is: each screen says what that is per table (``details_<id>``);
        # any other row opens whole.
        table = event.data_table
        if not isinstance(table, PagedTable) or table.selected is None:
            return
        event.stop()
        opener = getattr(self, f"details_{(table.id or '').replace('-', '_')}", None)
        if opener is not None:
            opener(table.selected)
        else:
            self.app.push_screen(Detail(f"{table.title.capitalize()}", fields(table.selected)))

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

    @on(Input.Submitted, "#command")
    def _command_done(self, event: Input.Submitted) -> None:
        from ..commands import run_command

        self.query_one("#command", LineInput).close()
        self.focus_table()
        run_command(self.app, event.value)
