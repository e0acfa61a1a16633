"""Commands: the ``:`` line (k9s-style, with arguments) and the same verbs in the ^p palette.

``:jobs failed`` shows the Jobs area filtered on "failed"; ``:run nightly`` runs a pipeline (after asking);
``:job materialize`` opens the parameters of a new job of that kind; ``:events alert.`` the event log of that
type; ``:log`` the daemon's log; ``:gpu`` every GPU; ``:theme NAME``; ``:help``; ``:q``.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .screens.gpus import GpuView
from .screens.logs import DaemonLog, EventLog
from .widgets.chrome import AREAS, SHORT

#: Other words people type for an area.
ALIASES = {"home": "overview", "job": "jobs", "sources": "data", "batches": "data", "quarantine": "data",
           "feat": "features", "views": "features", "exp": "experiments", "runs": "experiments",
           "model": "models", "registry": "models", "serve": "serving", "deployments": "serving",
           "mon": "monitoring", "monitors": "monitoring", "alerts": "monitoring", "drift": "monitoring",
           "plug": "plugins", "panel": "panels"}
for _mode, _label in AREAS:
    ALIASES.setdefault(_mode, _mode)
    ALIASES.setdefault(SHORT.get(_mode, _mode).lower(), _mode)


def run_command(app, line: str) -> None:
    """Carry out one ``:`` line; a word it does not know is a notice, never an error."""
    words = line.split()
    if not words:
        return
    verb, rest = words[0].lower(), " ".join(words[1:])
    if verb in ("q", "quit", "exit"):
        app.exit()
    elif verb in ("help", "h", "?"):
        app.action_help()
    elif verb in ("r", "refresh", "reload"):
        if hasattr(app.screen, "reload"):
            app.screen.reload()
    elif verb == "run" and rest:
        app.switch_mode("jobs")
        app.call_after_refresh(lambda: app.screen.run_pipeline(rest))
    elif verb == "job":
        app.switch_mode("jobs")
        app.call_after_refresh(lambda: app.screen.action_new_job(rest or None))
    elif verb in ("events", "event"):
        app.push_screen(EventLog(rest))
    elif verb in ("log", "logs"):
        app.push_screen(DaemonLog())
    elif verb in ("gpu", "gpus"):
        app.push_screen(GpuView(getattr(app.areas.get("overview"), "gpus", None)))
    elif verb == "theme":
        if not rest:
            app.action_change_theme()
        elif rest in app.available_themes:
            app.theme = rest
        else:
            app.notify(f"no theme {rest!r}; try one of: {', '.join(sorted(app.available_themes))}",
                       severity="warning")
    elif verb in ALIASES:
        app.switch_mode(ALIASES[verb])
        app.call_after_refresh(lambda: app.screen.apply_filter(rest))
    else:
        app.notify(f"no command {verb!r}: try :help", title="Command", severity="warning")


class AreaCommands(Provider):
    """The same verbs in the command palette (^p)."""

    def _commands(self):
        app = self.app
        for mode, label in AREAS:
            yield f"go {label.lower()}", partial(app.switch_mode, mode), f"show the {label} area"
        yield "events", partial(run_command, app, "events"), "the event log, filterable by type"
        yield "daemon log", partial(run_command, app, "log"), "the daemon's log"
        yield "gpus", partial(run_command, app, "gpu"), "every GPU with its history"
        yield "refresh", partial(run_command, app, "refresh"), "reload now"
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
