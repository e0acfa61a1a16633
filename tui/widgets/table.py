"""``PagedTable``: a DataTable that only ever holds one page of rows.

A 100k-row history stays responsive because the table never receives 100k rows: Textual's DataTable measures
every row it is given (about 2 ms a row here), so it gets ``page`` rows of what matches the filter at a time, and
more when the cursor reaches the last one. When every fetched row is shown it asks for more (``NeedMore``);
screens answer by fetching the next page from the daemon (``limit``/``before``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message
from textual.widgets import DataTable

from .format import cell


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    render: Callable[[dict], str] | None = None

    def text(self, row: dict) -> str:
        return self.render(row) if self.render else cell(row.get(self.key))


class PagedTable(DataTable):
    """Rows are dicts; ``columns`` say which keys show and how; ``selected`` is the dict under the cursor."""

    class NeedMore(Message):
        def __init__(self, table: PagedTable):
            super().__init__()
            self.table = table

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(self, columns: list[Column], *, page: int = 50, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.spec = columns
        self.page = page
        self.limit = page
        self.rows_all: list[dict] = []
        self.shown: list[dict] = []
        self.more = False  # the daemon has rows older than the last one fetched
        self.filter_text = ""
        self.sort_key: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        for c in self.spec:
            self.add_column(c.label, key=c.key)

    @property
    def selected(self) -> dict | None:
        if not self.shown or self.cursor_row < 0 or self.cursor_row >= len(self.shown):
            return None
        return self.shown[self.cursor_row]

    def show(self, rows: list[dict], *, more: bool = False) -> None:
        """Replace the rows (a refresh); the cursor stays on the same row index."""
        self.rows_all = list(rows)
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

    def sort_by(self, key: str) -> None:
        """Sort by a column; the same column again reverses."""
        self.sort_reverse = not self.sort_reverse if self.sort_key == key else False
        self.sort_key = key
        self._render_rows()

    def _matches(self, row: dict) -> bool:
        # The raw values, not the rendered cells: markup and gauges are not what a person types.
        return not self.filter_text or any(self.filter_text in str(row.get(c.key, "")).lower() for c in self.spec)

    def _render_rows(self) -> None:
        rows = [r for r in self.rows_all if self._matches(r)]
        if self.sort_key:
            key = self.sort_key
            rows.sort(key=lambda r: (r.get(key) is None, _sortable(r.get(key))), reverse=self.sort_reverse)
        self.shown = rows[: self.limit]
        cursor = self.cursor_row
        self.clear()
        self.add_rows([[c.text(r) for c in self.spec] for r in self.shown])
        if self.shown:
            self.move_cursor(row=min(max(cursor, 0), len(self.shown) - 1), animate=False)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if self.shown and new.row == len(self.shown) - 1:
            if len(self.shown) < sum(1 for r in self.rows_all if self._matches(r)):
                self.limit += self.page
                self.call_after_refresh(self._render_rows)
            elif self.more:
                self.post_message(self.NeedMore(self))


def _sortable(value: Any) -> Any:
    return (0, value) if isinstance(value, int | float) and not isinstance(value, bool) else (1, str(value))
