"""How values look in the dashboard: short, aligned, and relative to the app's clock (frozen in tests).

Tables cut a value to one line; detail views show it whole. Either way a field's name says what its number is:
a time (``created``, ``last_seen``...) shows as a date, a size (``..._bytes``, ``size``) in KiB/MiB/GiB, never
as ``1.796e+09``.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from rich.markup import escape

#: Fields holding seconds since the epoch.
TIME_FIELDS = {"time", "created", "started", "finished", "first_seen", "last_seen", "acked_at", "resolved_at",
               "materialized", "mtime", "decided", "next_fire", "last_fire", "next_run", "not_before", "scheduled_for",
               "updated", "fired", "at"}
#: Fields holding a count of bytes.
BYTE_FIELDS = {"size", "bytes"}


def is_time_field(key: str) -> bool:
    return key in TIME_FIELDS or key.endswith(("_at", "_time"))


def is_byte_field(key: str) -> bool:
    return key in BYTE_FIELDS or key.endswith("_bytes")


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


def size(n: float | None) -> str:
    """Bytes for a person: 73.9 GiB, not 7.744e+10."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def number(value: float) -> str:
    """Four significant digits for fractions; whole numbers with separators; never an exponent."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    return f"{value:.4g}"


def plain(value: Any, key: str = "") -> str:
    """A value as text, whole (no markup escaping): what a field's name says it is."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key and is_time_field(key) and value > 1e8:
            return clock(value)
        if key and is_byte_field(key):
            return size(value)
        return number(value) if isinstance(value, float) else str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def cell(value: Any, key: str = "", width: int = 60) -> str:
    """One table cell: one line, at most ``width`` characters, safe as markup."""
    text = plain(value, key).replace("\n", " ")
    # Values are data, never markup: a pattern like [a-z]+ must show as written.
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def full(value: Any, key: str = "") -> str:
    """A value for a detail view: nothing cut, containers indented, safe as markup."""
    if isinstance(value, dict | list) and value:
        return escape(json.dumps(value, indent=2, default=str))
    return escape(plain(value, key))


def fields(row: dict, skip: tuple[str, ...] = ()) -> str:
    """A record for a detail view, one field a line, each whole."""
    lines = []
    for k, v in row.items():
        if k in skip:
            continue
        text = full(v, k)
        lines.append(f"[b]{escape(k)}[/b]: {text}" if "\n" not in text else f"[b]{escape(k)}[/b]:\n{text}")
    return "\n".join(lines)


def bar(fraction: float | None, width: int = 20) -> str:
    """A text gauge, cheap to redraw many times a second (no widget per row)."""
    if fraction is None:
        return " " * width
    f = min(1.0, max(0.0, float(fraction)))
    full_cells = int(round(f * width))
    return "█" * full_cells + "░" * (width - full_cells)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 24) -> str:
    values = list(values)[-width:]
    if not any(values):
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


STATE_STYLE = {"running": "bold cyan", "queued": "yellow", "succeeded": "green", "failed": "bold red",
               "cancelled": "dim", "held": "bold yellow", "accepted": "green", "approved": "green",
               "rejected": "red", "ready": "green", "loading": "yellow", "loaded": "green", "refused": "red",
               "denied": "dim", "open": "bold red", "acked": "yellow", "acknowledged": "yellow",
               "resolved": "green", "interrupted": "red", "alert": "bold red", "ok": "green",
               "paused": "bold yellow", "active": "green"}


def state(value: str | None) -> str:
    """Markup for a state word, coloured the same on every screen."""
    if not value:
        return "-"
    style = STATE_STYLE.get(str(value))
    return f"[{style}]{value}[/]" if style else escape(str(value))
