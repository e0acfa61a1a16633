"""``PagedTable``: a DataTable that only ever holds one page of rows, and keeps its selection on the same item.

A 100k-row history stays responsive because the table never receives 100k rows: Textual's DataTable measures
every row it is given (about 2 ms a row here), so it gets ``page`` rows of what matches the filter at a time, and
more when the cursor reaches the last one. When every fetched row is shown it asks for more (``NeedMore``);
screens answer by fetching the next page from the daemon (``limit``/``before``).

A refresh replaces the rows; once the user has moved the cursor down to an item, it follows that item (by ``id``,
or ``name``), not its position, so a new job arriving at the top never moves an action onto another job. On the
first row it stays on the first row: the newest item, as new ones arrive (the head of a log, as in k9s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from .format import cell


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    render: Callable[[dict], str] | None = None
    #: Drawn from the clock (an age, a countdown): redrawn every tick, not only when the data changes.
    live: bool = False

    def text(self, row: dict) -> str:
        return self.render(row) if self.render else cell(row.get(self.key), self.key)


def identity(row: dict) -> Any:
    """What makes a row the same item across refreshes."""
    for key in ("id", "name", "key"):
        if row.get(key) is not None:
            return (key, row[key])
    return None


class PagedTable(DataTable):
    """Rows are dicts; ``columns`` say which keys show and how; ``selected`` is the dict under the cursor."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "first", "First row", show=False),
        Binding("G", "last", "Last row", show=False),
    ]

    class NeedMore(Message):
        def __init__(self, table: PagedTable):
            super().__init__()
            self.table = table

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(self, columns: list[Column], *, page: int = 50, id: str | None = None, title: str = "",
                 key: Callable[[dict], Any] = identity):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.spec = columns
        self.page = page
        self.limit = page
        self.title = title or (id or "row").replace("-", " ")
        self.key = key
        self.rows_all: list[dict] = []
        self.shown: list[dict] = []
        self.more = False  # the daemon has rows older than the last one fetched
        self.filter_text = ""
        self.sort_key: str | None = None
        self.sort_reverse = False
        self._row_keys: list = []
        #: The user chose the item under the cursor (moved it off the first row): refreshes keep it there.
        self.pinned = False
        self._rendering = False

    def on_mount(self) -> None:
        for c in self.spec:
            self.add_column(c.label, key=c.key)

    @property
    def selected(self) -> dict | None:
        if not self.shown or self.cursor_row < 0 or self.cursor_row >= len(self.shown):
            return None
        return self.shown[self.cursor_row]

    def show(self, rows: list[dict], *, more: bool = False) -> None:
        """Replace the rows (a refresh); the cursor stays on the same item. The same rows again cost nothing."""
        rows = list(rows)
        if rows == self.rows_all and more == self.more and self.shown:
            return
        self.rows_all = rows
        self.more = more
        self._render_rows()

    def extend(self, rows: list[dict], *, more: bool) -> None:
        self.rows_all.extend(rows)
        self.more = more
        self.limit += self.page
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self.limit = self.page
        self._render_rows()

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        """Sort by a column; the same column again reverses."""
        if reverse is None:
            reverse = not self.sort_reverse if self.sort_key == key else False
        self.sort_key, self.sort_reverse = key, reverse
        self._render_rows()

    def next_sort(self) -> None:
        """``s``: sort by the next column (none after the last); the header shows which, and which way."""
        keys = [c.key for c in self.spec if c.label]
        at = keys.index(self.sort_key) + 1 if self.sort_key in keys else 0
        if at < len(keys):
            self.sort_by(keys[at], reverse=False)
        else:
            self.sort_key = None
            self._render_rows()

    def reverse_sort(self) -> None:
        if self.sort_key:
            self.sort_by(self.sort_key, reverse=not self.sort_reverse)

    def tick(self) -> None:
        """Redraw the clock-drawn cells (ages age; nothing else changes)."""
        live = [c for c in self.spec if c.live]
        if not live or not self.shown:
            return
        for row_key, row in zip(self._row_keys, self.shown, strict=False):
            for c in live:
                text = c.text(row)
                if self.get_cell(row_key, c.key) != text:  # most ages read the same as a second ago
                    self.update_cell(row_key, c.key, text)

    def _matches(self, row: dict) -> bool:
        # The raw values, not the rendered cells: markup and gauges are not what a person types.
        return not self.filter_text or any(self.filter_text in str(row.get(c.key, "")).lower() for c in self.spec)

    def _render_rows(self) -> None:
        was = self.selected
        rows = [r for r in self.rows_all if self._matches(r)]
        if self.sort_key:
            key = self.sort_key
            rows.sort(key=lambda r: (r.get(key) is None, _sortable(r.get(key))), reverse=self.sort_reverse)
        self.shown = rows[: self.limit]
        cursor = self.cursor_row
        wanted = self.key(was) if was is not None and self.pinned else None
        if wanted is not None:
            cursor = next((i for i, r in enumerate(self.shown) if self.key(r) == wanted), cursor)
        self._rendering = True
        try:
            self.clear()
            self._label_headers()
            self._row_keys = self.add_rows([[c.text(r) for c in self.spec] for r in self.shown])
            if self.shown:
                self.move_cursor(row=min(max(cursor, 0), len(self.shown) - 1), animate=False)
        finally:
            self._rendering = False

    def _label_headers(self) -> None:
        for c in self.spec:
            column = self.columns.get(c.key)  # type: ignore[call-overload]
            if column is None:
                continue
            arrow = (" ▼" if self.sort_reverse else " ▲") if c.key == self.sort_key else ""
            column.label = Text(c.label + arrow)
            column.content_width = max(column.content_width, len(column.label))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self.shown) - 1)

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if not self._rendering:
            self.pinned = new.row > 0
        if self.shown and new.row == len(self.shown) - 1:
            if len(self.shown) < sum(1 for r in self.rows_all if self._matches(r)):
                self.limit += self.page
                self.call_after_refresh(self._render_rows)
            elif self.more:
                self.post_message(self.NeedMore(self))


def _sortable(value: Any) -> Any:
    return (0, value) if isinstance(value, int | float) and not isinstance(value, bool) else (1, str(value))
