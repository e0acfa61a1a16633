"""Driving the dashboard in tests: wait for its workers, find its tables, read the screen as drawn."""

from __future__ import annotations

import io
import time

from rich.console import Console

from tui.widgets.table import PagedTable


async def settle(pilot, app, until=lambda: True, timeout: float = 10.0) -> None:
    """Let workers finish (and the condition hold): the daemon answers over real HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause(0.05)
        busy = [w for w in app.workers if w.group not in ("events", "tail") and not w.is_finished]
        try:
            done = not busy and until()
        except Exception:  # the condition reads widgets that a screen being switched to has not built yet
            done = False
        if done or time.monotonic() > deadline:
            return


def table(app, name: str) -> PagedTable:
    return app.screen.query_one(f"#{name}", PagedTable)


def text_of(app) -> str:
    """The terminal's text as the user sees it now (every layer composited, modals included)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
