"""The ``:`` command palette: go to an area, refresh, or run the selected screen's actions by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .widgets.chrome import AREAS


class AreaCommands(Provider):
    def _commands(self):
        app = self.app
        for mode, label in AREAS:
            yield f"go {label.lower()}", partial(app.switch_mode, mode), f"show the {label} area"
        yield "refresh", lambda: app.screen.reload() if hasattr(app.screen, "reload") else None, "reload now"
        yield "help", app.action_help, "keys and actions"

    async def discover(self) -> Hits:
        for name, run, help_text in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
