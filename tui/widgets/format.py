"""How values look in the dashboard: short, aligned, and relative to the app's clock (frozen in tests)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.markup import escape


def ago(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    s = max(0.0, now - float(ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return f"{int(s)}s ago"


def until(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    s = float(ts) - now
    if s < 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"in {int(s // size)}{unit}"
    return f"in {int(s)}s"


def clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def cell(value: Any) -> str:
    """One table cell: numbers rounded, containers as compact JSON, nothing longer than a line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    # Values are data, never markup: a pattern like [a-z]+ must show as written.
    return escape(text if len(text) <= 60 else text[:59] + "…")


def bar(fraction: float | None, width: int = 20) -> str:
    """A text gauge, cheap to redraw many times a second (no widget per row)."""
    if fraction is None:
        return " " * width
    f = min(1.0, max(0.0, float(fraction)))
    full = int(round(f * width))
    return "█" * full + "░" * (width - full)


STATE_STYLE = {"running": "bold cyan", "queued": "yellow", "succeeded": "green", "failed": "bold red",
               "cancelled": "dim", "held": "bold yellow", "accepted": "green", "approved": "green",
               "rejected": "red", "ready": "green", "loading": "yellow", "loaded": "green", "refused": "red",
               "denied": "dim", "open": "bold red", "acknowledged": "dim", "interrupted": "red"}


def state(value: str | None) -> str:
    """Markup for a state word, coloured the same on every screen."""
    if not value:
        return "-"
    style = STATE_STYLE.get(str(value))
    return f"[{style}]{value}[/]" if style else str(value)
