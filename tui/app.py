"""The dashboard app: areas as modes, the event stream, the lost-daemon loop. Screens do the rest."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from platformdirs import user_downloads_path
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from . import settings
from .client import ApiClient, ApiError, DaemonLost, NotInstalled
from .commands import AreaCommands
from .keys import help_text
from .screens import SCREENS
from .screens.modals import Help
from .screens.nodaemon import NoDaemon
from .widgets.chrome import AREAS, KEYS


class ApplianceApp(App):
    """``api`` is anything with the ``ApiClient`` methods (tests inject a recorded fake for snapshots)."""

    CSS_PATH = "app.tcss"
    TITLE = "appliance"
    MODES = SCREENS
    DEFAULT_MODE = "overview"
    COMMANDS = App.COMMANDS | {AreaCommands}
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", label, show=False) for key, (mode, label) in zip(KEYS, AREAS,
                                                                                                 strict=True)),
        Binding("question_mark", "help", "Help"),
        Binding("q", "back_or_quit", "Quit"),
    ]
    #: Why the daemon does not answer; empty while it does (the banner watches this).
    lost = reactive("")

    def __init__(self, api: ApiClient, *, readonly: bool = False, live: bool = True,
                 clock: Callable[[], float] = time.time, home: Path | None = None, area: str = "overview"):
        # The first area is built first, so starting elsewhere costs nothing (Textual reads it in __init__).
        self.DEFAULT_MODE = area
        super().__init__()
        self.api = api
        self.readonly = readonly
        self.live = live
        self.clock = clock
        self.home = home
        self.events: deque[dict] = deque(maxlen=500)
        self.events_seen = 0
        #: The area screens built so far (a mode's screen is built when first shown), by area name.
        self.areas: dict[str, object] = {}
        self.last_event_id: int | None = None
        self.first_loaded = False
        #: ``perf_counter()`` when the first screen was on the terminal with the daemon's data (for the bench).
        self.first_paint: float | None = None
        remembered = settings.load(home).get("theme")
        if remembered in self.available_themes:
            self.theme = remembered

    def watch_theme(self, theme: str) -> None:
        settings.save(self.home, theme=theme)

    def attached(self) -> None:
        """The daemon answers (again): follow its events and reload what shows."""
        self.lost = ""
        self.follow_events()
        if hasattr(self.screen, "reload"):
            self.screen.reload()

    def loaded(self, screen) -> None:
        """A screen filled its widgets from the daemon. The first time, the event stream starts (after, so the
        first screen has the daemon to itself) and the refresh that follows is the first full paint."""
        if self.first_loaded:
            return
        self.first_loaded = True
        self.call_after_refresh(self._first_paint)
        if self.live:
            self.follow_events()

    def _first_paint(self) -> None:
        self.first_paint = time.perf_counter()

    # ------------------------------------------------------------------------------------------ events

    @work(exclusive=True, exit_on_error=False, group="events")
    async def follow_events(self) -> None:
        """Live events until the daemon goes away; then the banner, and retries until it is back."""
        delay = 0.25
        while True:
            try:
                async for event in self.api.events(after=self.last_event_id):
                    self.absorb(event)
                    delay = 0.25
                raise DaemonLost("the event stream ended", title="Daemon lost")
            except DaemonLost as exc:
                self.lost = exc.message
            except ApiError as exc:
                self.lost = f"{exc.title}: {exc.message}"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            await self.api.reconnect()
            try:
                await self.api.get("/health")
            except ApiError:
                continue
            if self.lost:
                self.lost = ""
                self.notify("the daemon is back", title="Reconnected")
                if hasattr(self.screen, "reload"):
                    self.screen.reload()

    def absorb(self, event: dict) -> None:
        """One event from the stream: remembered for the Overview, and passed to every area to mark it stale."""
        self.events.appendleft(event)
        self.events_seen += 1
        if isinstance(event.get("id"), int):
            self.last_event_id = event["id"]
        for screen in self.areas.values():
            screen.daemon_event(event)

    # ------------------------------------------------------------------------------------------ errors

    def report(self, error: BaseException | None) -> None:
        """A worker failed: the daemon's own words as a notification; a lost daemon as the banner."""
        if isinstance(error, DaemonLost):
            if isinstance(self.screen, NoDaemon):
                return  # that screen says it, and offers to start one
            if not self.first_loaded and self.live:
                self.push_screen(NoDaemon(self.api.where))
                return
            self.lost = error.message
            self.follow_events()
        elif isinstance(error, NotInstalled):
            self.notify(error.message, title="Not installed", severity="warning")
        elif isinstance(error, ApiError):
            self.notify(error.message, title=error.title, severity="error")
        elif error is not None:
            self.notify(f"{type(error).__name__}: {error}", title="Dashboard error", severity="error")

    # ------------------------------------------------------------------------------------------ keys

    def action_help(self) -> None:
        self.push_screen(Help(help_text(self, self.screen)))

    def action_back_or_quit(self) -> None:
        """``q``: back out of a pushed view (a job's log, a detail); quit only from an area itself."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        else:
            self.exit()

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Into ~/Downloads when there is one, else the current directory (a server often has no Downloads)."""
        if path is None:
            downloads = user_downloads_path()
            path = str(downloads if downloads.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)
