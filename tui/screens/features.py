"""Features: views, their versions, freshness and statistics, and an online lookup box."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from ..client import ApiError
from ..widgets.format import ago, cell, number
from ..widgets.table import Column, PagedTable
from .base import AreaScreen


class FeaturesScreen(AreaScreen):
    AREA = "features"
    EVENTS = ("features.", "training_set.")
    BINDINGS = [Binding("l", "lookup", "Online lookup")]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="features-missing", classes="missing")
        yield PagedTable([Column("name", "View"), Column("version", "Ver"),
                          Column("entities", "Entities", lambda r: entities(r.get("entities"))),
                          Column("source", "Source"), Column("rows", "Rows"),
                          Column("materialized", "Materialized", lambda r: ago(r.get("materialized"), now()),
                                 live=True)],
                         id="views", title="feature view")
        yield Static(id="view-detail", classes="box")
        yield Input(placeholder="online lookup: key=value[,key=value] (enter)", id="lookup")
        yield Static(id="lookup-result", classes="box")

    async def fetch(self) -> None:
        views = await self.section(self.query_one("#features-missing", Static), "/features")
        if views is None:
            return
        self.query_one("#views", PagedTable).show(views)
        self._load_detail()

    async def _detail(self) -> None:
        view = self.query_one("#views", PagedTable).selected
        box = self.query_one("#view-detail", Static)
        if view is None:
            box.update("[dim]no feature views[/]")
            return
        d = await self.api.get(f"/features/{view['name']}")
        box.update(view_summary(d, self.app.clock()))

    @on(DataTable.RowHighlighted, "#views")
    def _moved(self) -> None:
        self._load_detail()

    @work(exclusive=True, exit_on_error=False, group="detail")
    async def _load_detail(self) -> None:
        await self._detail()

    def action_lookup(self) -> None:
        self.query_one("#lookup", Input).focus()

    @on(Input.Submitted, "#lookup")
    def _lookup(self, event: Input.Submitted) -> None:
        try:
            entity = dict(part.split("=", 1) for part in event.value.split(",") if part.strip())
        except ValueError:
            self.notify("write key=value pairs, separated by commas", severity="warning")
            return
        if entity:
            self._online({k.strip(): v.strip() for k, v in entity.items()})

    @work(exclusive=True, exit_on_error=False, group="lookup")
    async def _online(self, entity: dict) -> None:
        box = self.query_one("#lookup-result", Static)
        try:
            out = await self.api.post("/features/online", {"entity": entity})
        except ApiError as exc:
            box.update(f"[red]{exc.title}: {exc.message}[/]")
            return
        values = (out.get("values") or [{}])[0]
        pairs = values.items() if isinstance(values, dict) else zip(out.get("features", []), values, strict=False)
        box.update("\n".join(f"{k:<32} {cell(v)}" for k, v in pairs) or "[dim]no values[/]")


def entities(value) -> str:
    """``{"card": ["card_id"]}`` (or a plain list of keys) as ``card(card_id)``."""
    if isinstance(value, dict):
        return ", ".join(f"{name}({','.join(keys)})" for name, keys in value.items())
    return cell(value)


def view_summary(d: dict, now: float) -> str:
    """A view's head line and one line per feature: type, nulls, min, mean, max (``stats.features``)."""
    stats = d.get("stats") or {}
    per_feature = stats.get("features") if isinstance(stats.get("features"), dict) else {}
    online = d.get("online_age_s")
    lines = [f"[b]{cell(d.get('name'))}[/b] v{cell(d.get('version'))}  rows {cell(d.get('rows'))}  materialized "
             f"{ago(d.get('materialized'), now)}",
             f"watermark {cell(d.get('watermark'))}"
             + (f"  online age {number(max(0.0, online))} s" if isinstance(online, int | float) else "")]
    for name, s in per_feature.items():
        s = s if isinstance(s, dict) else {}
        lines.append(f"  {cell(name, width=24):<24} {cell(s.get('type'), width=7):<7} nulls {cell(s.get('nulls'))}  "
                     f"min {cell(s.get('min'))}  mean {cell(s.get('mean'))}  max {cell(s.get('max'))}")
    if not per_feature:
        lines.append("  [dim]no statistics yet (materialize the view)[/]")
    return "\n".join(lines)
