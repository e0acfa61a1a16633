"""Plugins: loaded and failed ones, the hooks each implements, what each registered, failures with tracebacks."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ..widgets.format import cell, clock, state
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Detail


class PluginsScreen(AreaScreen):
    AREA = "plugins"
    EVENTS = ("plugin.",)
    BINDINGS = [Binding("enter", "details", "Details / traceback")]

    def __init__(self):
        super().__init__()
        self.failures: list[dict] = []

    def body(self) -> ComposeResult:
        yield PagedTable([Column("name", "Plugin"), Column("source", "Source"),
                          Column("status", "Status", lambda r: state(r.get("status"))), Column("version", "Version"),
                          Column("hooks", "Hooks", lambda r: ", ".join(r.get("hooks") or []) or "-"),
                          Column("error", "Error")], id="plugins", title="plugin")
        yield Static("Failures", classes="heading")
        yield PagedTable([Column("plugin", "Plugin"), Column("hook", "Hook"), Column("message", "Message"),
                          Column("time", "When", lambda r: clock(r.get("time")))], id="failures",
                         title="plugin failure", key=lambda r: (r.get("plugin"), r.get("hook"), r.get("time")))

    async def fetch(self) -> None:
        report = await self.api.get("/plugins")
        self.failures = report.get("failures") or []
        self.query_one("#plugins", PagedTable).show(report.get("plugins") or [])
        self.query_one("#failures", PagedTable).show(self.failures)

    def details_plugins(self, p: dict) -> None:
        lines = [f"source: {p.get('source')}   status: {state(p.get('status'))}   module: {cell(p.get('module'))}",
                 f"contract: {cell(p.get('contract'))}   version: {cell(p.get('version'))}",
                 "", "[b]hooks[/b]", *(f"  {h}" for h in p.get("hooks") or []),
                 "", "[b]registered[/b]",
                 *(f"  {k}: {', '.join(v)}" for k, v in (p.get("registrations") or {}).items() if v)]
        if p.get("error"):
            lines += ["", f"[red]{escape(p['error'])}[/]"]
        for f in (f for f in self.failures if f.get("plugin") == p.get("name")):
            lines += ["", f"[b]{escape(f.get('hook', ''))}[/b]: {escape(f.get('message', ''))}",
                      escape(f.get("traceback") or "")]
        self.app.push_screen(Detail(f"Plugin {p.get('name')}", "\n".join(lines)))
