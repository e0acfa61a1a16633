"""The help page (``?``), written from the bindings themselves: the screen's, its tables', and the app's, so it
can never disagree with what the keys do."""

from __future__ import annotations

from rich.markup import escape
from textual.binding import Binding

from .widgets.table import PagedTable

COMMANDS = """[b]Commands[/b] (:)
  :jobs failed        an area, filtered (any area name; what follows filters its tables)
  :run nightly        run a pipeline now (asks first)
  :job materialize    queue a job of a kind, with its parameters
  :events alert.      the event log, filtered by type
  :log                the daemon's log
  :gpu                every GPU: utilisation, memory, temperature, power, processes
  :theme [name]       change the colours (remembered)
  :help  :q           this page; quit"""


def bindings_of(cls: type) -> list[Binding]:
    """Every binding a class and its bases declare, the class's own winning over its bases' for a key."""
    found: dict[str, Binding] = {}
    for klass in reversed(cls.__mro__):
        for b in klass.__dict__.get("BINDINGS", []):
            b = b if isinstance(b, Binding) else Binding(*b)
            for key in b.key.split(","):
                found[key.strip()] = b
    return list(dict.fromkeys(found.values()))


def _lines(app, bindings: list[Binding], hide: frozenset[str] = frozenset()) -> list[str]:
    lines = []
    for b in bindings:
        if not b.description or b.action in hide:
            continue
        keys = " ".join(app.get_key_display(Binding(k.strip(), b.action)) for k in b.key.split(","))
        lines.append(f"  {escape(keys):<12} {escape(b.description)}")
    return lines


def help_text(app, screen) -> str:
    """The keys that work on ``screen`` now (read-only mode leaves out the ones it refuses)."""
    hidden = getattr(screen, "MUTATING", frozenset()) if app.readonly else frozenset()
    own = [b for b in bindings_of(type(screen))]
    parts = [f"[b]{escape(type(screen).__name__.removesuffix('Screen'))}[/b]", *_lines(app, own, hidden)]
    if screen.query(PagedTable):
        parts += ["", "[b]Tables[/b]", *_lines(app, bindings_of(PagedTable)),
                  "  enter        open the row under the cursor", "  tab          next table",
                  "  click header sort by that column"]
    app_keys = [b for b in bindings_of(type(app)) if not b.action.startswith("switch_mode")]
    parts += ["", "[b]Everywhere[/b]", "  1-9 0        switch area (or click a tab)", *_lines(app, app_keys),
              "  ^p           command palette", ""]
    if app.readonly:
        parts += ["[b red]READ-ONLY[/]: keys that change the box are hidden and refused", ""]
    parts.append(COMMANDS)
    return "\n".join(parts)
