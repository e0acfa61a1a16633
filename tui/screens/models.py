"""Models: versions, aliases, tags, lineage and the audit log; promote a version to an alias, or roll one back."""

from __future__ import annotations

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from ..widgets.format import ago, cell, clock, fields, number
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Confirm, Detail, Prompt


class ModelsScreen(AreaScreen):
    AREA = "models"
    EVENTS = ("model.",)
    MUTATING = frozenset({"promote", "rollback"})
    BINDINGS = [
        Binding("p", "promote", "Promote version"),
        Binding("b", "rollback", "Roll back alias"),
        Binding("enter", "details", "Version lineage"),
    ]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - frozen in snapshot tests
        yield Static(id="models-missing", classes="missing")
        with Horizontal(id="models-top"):
            with Vertical(classes="third"):
                yield Static("Models", classes="heading")
                yield PagedTable([Column("name", "Model"),
                                  Column("aliases", "Aliases", lambda r: " ".join(
                                      f"{a}→{v}" for a, v in sorted((r.get("aliases") or {}).items())) or "-"),
                                  Column("tags", "Tags", lambda r: tags(r.get("tags")))],
                                 id="models", title="model")
            with Vertical(classes="twothirds"):
                yield Static("Versions", classes="heading")
                yield PagedTable([Column("version", "Ver"),
                                  Column("aliases", "Aliases", lambda r: " ".join(r.get("aliases") or []) or "-"),
                                  Column("tags", "Tags", lambda r: tags(r.get("tags"))),
                                  Column("metrics", "Metrics", lambda r: metrics(r.get("metrics"))),
                                  Column("created", "Created", lambda r: ago(r.get("created"), now()), live=True)],
                                 id="versions", title="version", key=lambda r: r.get("version"))
        yield Static("Audit log", classes="heading")
        yield PagedTable([Column("id", "#"), Column("action", "Action"), Column("alias", "Alias"),
                          Column("from_version", "From"), Column("to_version", "To"), Column("actor", "By"),
                          Column("reason", "Reason"),
                          Column("time", "When", lambda r: ago(r.get("time"), now()), live=True)],
                         id="audit", title="audit entry")

    async def fetch(self) -> None:
        models = await self.section(self.query_one("#models-missing", Static), "/models")
        if models is None:
            return
        self.query_one("#models", PagedTable).show(models)
        self._load_model()

    async def _model(self) -> None:
        model = self.query_one("#models", PagedTable).selected
        if model is None:
            return
        d = await self.api.get(f"/models/{model['name']}")
        self.query_one("#versions", PagedTable).show(list(reversed(d.get("versions") or [])))
        self.query_one("#audit", PagedTable).show(d.get("audit") or [])

    @on(DataTable.RowHighlighted, "#models")
    def _moved(self) -> None:
        self._load_model()

    @work(exclusive=True, exit_on_error=False, group="model")
    async def _load_model(self) -> None:
        await self._model()

    def _selection(self) -> tuple[dict | None, dict | None]:
        return self.query_one("#models", PagedTable).selected, self.query_one("#versions", PagedTable).selected

    def details_versions(self, version: dict) -> None:
        self._version(version.get("name"), version.get("version"))

    @work(exit_on_error=False, group="detail")
    async def _version(self, name: str, number: int) -> None:
        """A version whole: its lineage down to the ingest batches, then every field (the list row carries only
        part of it)."""
        d = await self.api.get(f"/models/{name}/versions/{number}")
        chain = await self.api.get(f"/models/{name}/versions/{number}/lineage")
        body = lineage(chain) + "\n\n" + fields(d)
        self.app.push_screen(Detail(f"{name} version {number}", body))

    def action_promote(self) -> None:
        model, version = self._selection()[0], self.pick("versions", "version")
        if model is None or version is None:
            return
        if not self.allowed(f"promoting {model['name']} version {version['version']}"):
            return
        name, number = model["name"], version["version"]

        def alias_given(alias: str | None) -> None:
            if not alias:
                return
            current = (model.get("aliases") or {}).get(alias)
            was = f" (now version {current})" if current is not None else ""
            self.app.push_screen(Confirm(f"Point {name}@{alias}{was} at version {number}?"), lambda yes: yes and
                                 self._act(f"/models/{name}/aliases/{alias}", {"version": number, "reason": "tui"},
                                           f"{name}@{alias} → version {number}"))

        self.app.push_screen(Prompt(f"Promote {name} version {number} to alias", value="champion"), alias_given)

    def action_rollback(self) -> None:
        model, _ = self._selection()
        if model is None:
            return
        if not self.allowed(f"rolling back an alias of {model['name']}"):
            return
        name = model["name"]
        aliases = sorted((model.get("aliases") or {}).keys())

        def alias_given(alias: str | None) -> None:
            if alias:
                self.app.push_screen(Confirm(f"Roll {name}@{alias} back to its previous version?"), lambda yes:
                                     yes and self._act(f"/models/{name}/aliases/{alias}/rollback",
                                                       {"reason": "tui"}, f"{name}@{alias} rolled back"))

        self.app.push_screen(Prompt(f"Roll back which alias of {name}?", value=aliases[0] if aliases else ""),
                             alias_given)

    @work(exit_on_error=False, group="action")
    async def _act(self, path: str, body: dict, done: str) -> None:
        await self.api.post(path, body)
        self.notify(done, title="Done")
        self.reload()


def tags(values) -> str:
    """``{"owner": "risk"}`` as ``owner=risk``."""
    if not isinstance(values, dict) or not values:
        return "-"
    return escape(" ".join(f"{k}={v}" for k, v in sorted(values.items())))


def lineage(chain: dict) -> str:
    """Where a version came from, as ``GET /models/NAME/versions/V/lineage`` tells it: run, training data,
    feature-view versions and the ingest batches (file, content hash, rows) behind each."""
    lines = ["[b]Lineage[/b]"]
    run = chain.get("run")
    if run:
        lines.append(f"  run {run['id']}: " + (escape(run["missing"]) if run.get("missing") else
                     f"{cell(run.get('experiment'))}/{cell(run.get('spec'))}  {cell(run.get('state'))}"
                     f"  config {cell(run.get('config_hash'))[:12]}"))
    data = chain.get("data") or {}
    if data.get("kind") == "training_set":
        lines.append(f"    training set {data['id']} {cell(data.get('name'))}  sha256 "
                     f"{cell(data.get('sha256'))[:12]}  {cell(data.get('rows'))} rows")
    elif data.get("kind") == "upload":
        lines.append(f"    uploaded as {cell(data.get('file'))}")
    elif data.get("kind") == "parquet":
        lines.append(f"    parquet {cell(data.get('path'))}  sha256 {cell(data.get('sha256'))[:12]}")
    for view in chain.get("views") or []:
        lines.append(f"      feature view {escape(view['view'])} v{view['version']} from "
                     f"{cell(view.get('source'))}")
        batches = view.get("batches")
        if batches is None:
            lines.append("        [dim]batches not recorded[/]")
        for b in batches or []:
            lines.append(f"        batch {b['id']}  {escape(str(b['file']))}  {escape(str(b['content_hash']))}  "
                         f"{b['rows']} rows  {clock(b.get('time'))}")
    return "\n".join(lines)


def metrics(values) -> str:
    """``{"auc": 0.7333721365874545}`` as ``auc 0.7334``: what a person compares at a glance."""
    if not isinstance(values, dict):
        return cell(values)
    return "  ".join(f"{k} {number(v) if isinstance(v, float) else cell(v)}" for k, v in sorted(values.items()))
