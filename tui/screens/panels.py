"""Panels contributed by plugins (``register_tui_panels``): declared as data by the daemon, rendered here."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..client import ApiError
from ..widgets.format import cell
from ..widgets.table import Column, PagedTable
from .base import AreaScreen


class PanelsScreen(AreaScreen):
    AREA = "panels"
    EVENTS = ("plugin.",)

    def __init__(self):
        super().__init__()
        self.panels: list[dict] = []
        self._since: dict[str, float] = {}

    def body(self) -> ComposeResult:
        yield Static(id="panels-missing", classes="missing")
        yield VerticalScroll(id="panels")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.is_current and not self.app.lost and self.app.live:
            now = self.app.clock()
            if any(now - self._since.get(p["name"], 0) >= float(p.get("refresh_s") or 5) for p in self.panels):
                self.reload()

    async def fetch(self) -> None:
        panels = await self.section(self.query_one("#panels-missing", Static), "/tui/panels")
        if panels is None:
            return
        box = self.query_one("#panels", VerticalScroll)
        placeholder = self.query_one("#panels-missing", Static)
        if not panels:
            placeholder.update("[dim]no plugin contributes a panel: a plugin adds one with the register_tui_panels "
                               "hook (see docs/plugins.md)[/]")
        placeholder.display = not panels
        if [p["name"] for p in panels] != [p["name"] for p in self.panels]:
            await box.remove_children()
            widgets = []
            for p in panels:
                widgets.append(Static(f"[b]{p['title']}[/b] [dim]({p.get('plugin')}: {p['route']})[/]",
                                      classes="heading"))
                if p["kind"] == "table":
                    columns = p.get("columns") or []
                    widgets.append(PagedTable([Column(c, c) for c in columns], page=100,
                                              id=f"panel-{p['name']}") if columns else
                                   Static(id=f"panel-{p['name']}", classes="box"))
                else:
                    widgets.append(Static(id=f"panel-{p['name']}", classes="box"))
            await box.mount_all(widgets)
        self.panels = panels
        for p in panels:
            await self._fill(p)

    async def _fill(self, panel: dict) -> None:
        """One panel's data; a failing route shows its error in that panel only."""
        self._since[panel["name"]] = self.app.clock()
        target = self.query_one(f"#panel-{panel['name']}")
        try:
            data = await self.api.get(panel["route"])
        except ApiError as exc:
            if isinstance(target, Static):
                target.update(f"[red]{exc.title}: {exc.message}[/]")
            else:
                self.notify(exc.message, title=f"Panel {panel['title']}", severity="error")
            return
        if panel["kind"] == "keyvalue":
            target.update("\n".join(f"{k:<20} {cell(v, k, width=200)}" for k, v in (data or {}).items()))
            return
        rows = data.get(panel.get("rows_key") or "", []) if isinstance(data, dict) else data or []
        if isinstance(target, PagedTable):
            target.show(rows)
        else:
            keys = list(rows[0]) if rows else []
            target.update("\n".join(["  ".join(keys)] + ["  ".join(cell(r.get(k)) for k in keys) for r in rows]))
