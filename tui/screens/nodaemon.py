"""Shown when no daemon runs on the home: offers to start one (``appliance up``, detached) and attaches."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from ..client import ApiError


class NoDaemon(ModalScreen[None]):
    BINDINGS = [Binding("s", "start", "Start the daemon"), Binding("q,escape", "app.quit", "Quit")]

    def __init__(self, where: str):
        super().__init__(classes="modal")
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]No daemon runs on {self.where}[/b]\n\n"
                         "Press [b]s[/b] to start it (`appliance up`, detached from this terminal),\n"
                         "or [b]q[/b] to quit.", id="nodaemon-text")

    def action_start(self) -> None:
        if self.app.readonly:
            self.notify("read-only: starting the daemon refused", title="Read-only", severity="warning")
            return
        self._start()

    @work(exclusive=True, exit_on_error=False)
    async def _start(self) -> None:
        text = self.query_one("#nodaemon-text", Static)
        text.update(f"Starting the daemon on {self.where}…")
        cmd = [sys.executable, "-m", "appliance"]
        if self.app.home is not None:
            cmd += ["--home", str(self.app.home)]
        # Its own session: the daemon must outlive this dashboard and ignore its Ctrl-C.
        subprocess.Popen([*cmd, "up"], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        text.update(f"[red]The daemon did not start within 30 s[/]; see the logs in {self.where}/logs.\n"
                    "Press s to try again or q to quit.")
