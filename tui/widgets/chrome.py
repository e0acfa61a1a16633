"""What every screen shows around its body: the area tabs and the lost-daemon banner."""

from __future__ import annotations

from textual.widgets import Static

AREAS = [("overview", "Overview"), ("jobs", "Jobs"), ("data", "Data"), ("features", "Features"),
         ("experiments", "Experiments"), ("models", "Models"), ("serving", "Serving"),
         ("monitoring", "Monitoring"), ("plugins", "Plugins"), ("panels", "Panels")]
#: Tab labels for a terminal too narrow for the full names (80 columns over SSH).
SHORT = {"overview": "Home", "features": "Feat", "experiments": "Exp", "models": "Model", "serving": "Serve",
         "monitoring": "Mon", "plugins": "Plug", "panels": "Panel"}
KEYS = "1234567890"


class NavBar(Static):
    """The areas as tabs: a number key or a click switches; the current one is highlighted."""

    def __init__(self, current: str):
        super().__init__(id="nav")
        self.current = current

    def on_resize(self) -> None:
        narrow = self.size.width < 110
        parts = []
        for key, (mode, label) in zip(KEYS, AREAS, strict=True):
            style = "reverse bold" if mode == self.current else ""
            text = f"{key} {SHORT.get(mode, label)} " if narrow else f" {key} {label} "
            parts.append(f"[@click=app.switch_mode('{mode}')]{f'[{style}]{text}[/]' if style else text}[/]")
        readonly = (" [b red]RO[/]" if narrow else "  [b red]READ-ONLY[/]") if self.app.readonly else ""
        self.update("".join(parts) + readonly)


class LostBanner(Static):
    """Shown while the daemon does not answer; the app keeps trying and hides it when it is back."""

    def __init__(self):
        super().__init__("", id="lost")

    def on_mount(self) -> None:
        self.watch(self.app, "lost", self._show)

    def _show(self, lost: str) -> None:
        self.display = bool(lost)
        self.update(f"[b]Daemon lost[/b]: {lost}. Reconnecting… (the data below may be stale)")
