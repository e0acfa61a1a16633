"""What every screen shows around its body: the area tabs with the read-only marker and the data's age, the
lost-daemon banner, and the filter and command lines."""

from __future__ import annotations

from textual.widgets import Input, Static

from .format import ago

AREAS = [("overview", "Overview"), ("jobs", "Jobs"), ("data", "Data"), ("features", "Features"),
         ("experiments", "Experiments"), ("models", "Models"), ("serving", "Serving"),
         ("monitoring", "Monitoring"), ("plugins", "Plugins"), ("panels", "Panels")]
#: Tab labels for a terminal too narrow for the full names (80 columns over SSH).
SHORT = {"overview": "Home", "features": "Feat", "experiments": "Exp", "models": "Model", "serving": "Serve",
         "monitoring": "Mon", "plugins": "Plug", "panels": "Panel"}
KEYS = "1234567890"


class NavBar(Static):
    """The areas as tabs: a number key or a click switches; the current one is highlighted.

    The read-only marker comes first, so no width hides it; the age of the screen's data comes last (and says
    "stale" while the daemon is lost)."""

    def __init__(self, current: str):
        super().__init__(id="nav")
        self.current = current
        self.loaded_at: float | None = None
        self._drawn = ""

    def on_mount(self) -> None:
        self.set_interval(1.0, self.draw)
        self.watch(self.app, "lost", lambda _: self.draw())

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        readonly = self.app.readonly
        age, style = self._age()
        for long_names, long_marker in ((True, True), (False, True), (False, False)):
            marker = ("READ-ONLY " if long_marker else "RO ") if readonly else ""
            tabs = [(mode, f" {key} {label} " if long_names else f"{key} {SHORT.get(mode, label)} ")
                    for key, (mode, label) in zip(KEYS, AREAS, strict=True)]
            width = len(marker) + sum(len(t) for _, t in tabs) + len(age) + 1
            if width <= self.size.width:
                break
        parts = [f"[b reverse red]{marker.strip()}[/] " if marker else ""]
        for mode, text in tabs:
            shown = f"[reverse bold]{text}[/]" if mode == self.current else text
            parts.append(f"[@click=app.switch_mode('{mode}')]{shown}[/]")
        room = self.size.width - width
        text = "".join(parts) + " " * max(1, room + 1) + f"[{style}]{age}[/]"
        if text != self._drawn:  # the age changes once a second at most; nothing else does
            self._drawn = text
            self.update(text, layout=False)  # one line, always: no layout pass for the whole screen

    def _age(self) -> tuple[str, str]:
        """How old the data below is, and its style."""
        if self.app.lost:
            return "stale", "b red"
        if self.loaded_at is None:
            return "loading", "dim"
        return "⟳ " + ago(self.loaded_at, self.app.clock()).replace(" ago", ""), "dim"


class LostBanner(Static):
    """Shown while the daemon does not answer; the app keeps trying and hides it when it is back."""

    def __init__(self):
        super().__init__("", id="lost")

    def on_mount(self) -> None:
        self.watch(self.app, "lost", self._show)

    def _show(self, lost: str) -> None:
        self.display = bool(lost)
        self.update(f"[b]Daemon lost[/b]: {lost}. Reconnecting… (the data below is stale)")


class LineInput(Input):
    """The filter (``/``) and command (``:``) lines: hidden until asked for, focused at once so no key typed right
    after the ``/`` is lost."""

    def open(self, value: str = "") -> None:
        self.add_class("open")
        self.value = value
        # Screen.set_focus is immediate; Widget.focus() defers to after the keys already queued, which then go to
        # the table.
        self.screen.set_focus(self)
        self.cursor_position = len(value)

    def close(self) -> None:
        self.remove_class("open")
