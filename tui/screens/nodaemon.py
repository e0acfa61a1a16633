"""Shown when no daemon runs on the home: offers to start one with its project (``appliance up``, detached), or
to attach to the demo's daemon when ``appliance demo`` (``make run``) runs one on its own home."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from .. import settings
from ..client import ApiClient, ApiError


def demo_home(home: Path) -> Path:
    """Where ``appliance demo`` keeps its home: beside the real one (see plugins/demo)."""
    return home.with_name(home.name + "-demo")


def project_for(home: Path | None) -> Path | None:
    """The project to start: the current directory's, or the one this home's daemon served last."""
    if (Path.cwd() / "appliance.toml").is_file():
        return Path.cwd()
    remembered = settings.load(home).get("project")
    if remembered and (Path(remembered) / "appliance.toml").is_file():
        return Path(remembered)
    return None


class NoDaemon(ModalScreen[None]):
    BINDINGS = [Binding("s", "start", "Start the daemon"), Binding("d", "demo", "Attach to the demo"),
                Binding("q,escape", "app.quit", "Quit")]

    def __init__(self, where: str):
        super().__init__(classes="modal")
        self.where = where
        self.demo: Path | None = None
        self.project: Path | None = None

    def compose(self) -> ComposeResult:
        home = self.app.home
        self.project = project_for(home)
        if home is not None and (demo_home(Path(home)) / "daemon.json").exists():
            self.demo = demo_home(Path(home))
        with Vertical(classes="dialog"):
            yield Static(self._text(), id="nodaemon-text")

    def _text(self) -> str:
        lines = [f"[b]No daemon runs on {self.where}[/b]", ""]
        if self.demo is not None:
            lines += [f"The demo's daemon runs on {self.demo}:", "press [b]d[/b] to attach to it.", ""]
        if self.project is not None:
            lines.append(f"Press [b]s[/b] to start one serving {self.project}\n(`appliance up`, detached from this "
                         "terminal),")
        else:
            lines.append("No project to start it with: run `appliance up --project DIR`, or `appliance` from a\n"
                         "directory with an appliance.toml,")
        lines.append("or [b]q[/b] to quit.")
        return "\n".join(lines)

    def action_start(self) -> None:
        if self.app.readonly:
            self.notify("read-only: starting the daemon refused", title="Read-only", severity="warning")
            return
        if self.project is None:
            self.notify("no project here or remembered for this home: start it with `appliance up --project DIR`",
                        title="No project", severity="warning")
            return
        self._start_daemon(self.project)

    def action_demo(self) -> None:
        if self.demo is None:
            return
        self.app.api = ApiClient(self.demo)
        self.app.home = self.demo
        self.app.notify(f"attached to the demo's daemon on {self.demo}", title="Demo")
        self._wait_for(f"the demo's daemon on {self.demo}")

    @work(exclusive=True, exit_on_error=False)
    async def _start_daemon(self, project: Path) -> None:
        cmd = [sys.executable, "-m", "appliance"]
        if self.app.home is not None:
            cmd += ["--home", str(self.app.home)]
        # Its own session: the daemon must outlive this dashboard and ignore its Ctrl-C.
        subprocess.Popen([*cmd, "up", "--project", str(project)], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await self._connect_when_up(f"the daemon on {self.where}")

    @work(exclusive=True, exit_on_error=False)
    async def _wait_for(self, what: str) -> None:
        await self._connect_when_up(what)

    async def _connect_when_up(self, what: str) -> None:
        text = self.query_one("#nodaemon-text", Static)
        text.update(f"Waiting for {what}…")
        for _ in range(300):
            await asyncio.sleep(0.1)
            await self.app.api.reconnect()
            try:
                await self.app.api.get("/health")
            except ApiError:
                continue
            self.dismiss()
            self.app.attached()
            return
        text.update(f"[red]{what} did not answer within 30 s[/]; see the logs in {self.app.home}/logs.\n"
                    "Press s to try again or q to quit.")
