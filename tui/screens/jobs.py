"""Jobs and pipelines: the queue and history (paged from the daemon), schedules, run and cancel.

``n`` picks a job kind and asks for its parameters (filled in from the last job of that kind, which is what a
person usually wants to run again); ``p`` runs the selected schedule's pipeline, or one named.
"""

from __future__ import annotations

import json

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ..widgets.format import ago, bar, state, until
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .jobdetail import JobDetail
from .modals import Confirm, Picker, Prompt

PAGE = 200


class JobsScreen(AreaScreen):
    AREA = "jobs"
    EVENTS = ("job.", "pipeline.")
    POLL_S = 2.0  # progress of a running job is not worth an event each step
    MUTATING = frozenset({"cancel_job", "new_job", "run_pipeline", "pause_schedule"})
    BINDINGS = [
        Binding("enter", "details", "Job log / schedule"),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("n", "new_job", "New job"),
        Binding("p", "run_pipeline", "Run pipeline"),
        Binding("t", "pause_schedule", "Pause/resume schedule"),
    ]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - the app's clock is frozen in snapshot tests
        yield PagedTable([Column("id", "Job"), Column("kind", "Kind"),
                          Column("state", "State", lambda r: state(r.get("state"))),
                          Column("progress", "Progress", lambda r: bar(r.get("progress"), 10)),
                          Column("attempt", "Try"),
                          Column("created", "Created", lambda r: ago(r.get("created"), now()), live=True),
                          Column("origin", "Origin"), Column("error", "Error")], id="jobs", title="job")
        yield Static("Schedules", classes="heading")
        yield Static(id="schedules-missing", classes="missing")
        yield PagedTable([Column("name", "Schedule"), Column("type", "Type"), Column("target", "Target"),
                          Column("schedule", "When"),
                          Column("paused", "State", lambda r: state("paused" if r.get("paused") else "active")),
                          Column("next_fire", "Next", lambda r: until(r.get("next_fire"), now()), live=True),
                          Column("last_fire", "Last", lambda r: ago(r.get("last_fire"), now()), live=True)],
                         id="schedules", title="schedule")

    def _poll(self) -> None:
        # Only progress needs the timer (every state change is an event): poll while a job is queued or running.
        if any(r.get("state") in ("queued", "running") for r in self.query_one("#jobs", PagedTable).rows_all):
            super()._poll()

    async def fetch(self) -> None:
        jobs = await self.api.get("/jobs", limit=PAGE)
        schedules = await self.section(self.query_one("#schedules-missing", Static), "/schedules")
        self.query_one("#jobs", PagedTable).show(jobs, more=len(jobs) == PAGE)
        self.query_one("#schedules", PagedTable).show(schedules or [])

    @on(PagedTable.NeedMore, "#jobs")
    def _more(self, event: PagedTable.NeedMore) -> None:
        self._next_page(event.table)

    @work(exclusive=True, exit_on_error=False, group="page")
    async def _next_page(self, table: PagedTable) -> None:
        oldest = min(r["id"] for r in table.rows_all)
        page = await self.api.get("/jobs", limit=PAGE, before=oldest)
        table.extend(page, more=len(page) == PAGE)

    def details_jobs(self, job: dict) -> None:
        self.app.push_screen(JobDetail(job["id"]))

    def action_cancel_job(self) -> None:
        job = self.pick("jobs", "job")
        if job is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("POST", f"/jobs/{job['id']}/cancel", None, f"job {job['id']} cancelled")

        self.app.push_screen(Confirm(f"Cancel job {job['id']} ({job['kind']}, {job['state']})?"), answered)

    def action_new_job(self, kind: str | None = None) -> None:
        if not self.allowed("running a job"):
            return
        if kind:
            self._ask_params(kind)
        else:
            self._pick_kind()

    @work(exclusive=True, exit_on_error=False, group="action")
    async def _pick_kind(self) -> None:
        kinds = await self.api.get("/job-kinds")
        choices = [(k["name"], k.get("description") or "") for k in kinds]
        self.app.push_screen(Picker("Run a job of which kind?", choices),
                             lambda kind: kind and self._ask_params(kind))

    @work(exclusive=True, exit_on_error=False, group="action")
    async def _ask_params(self, kind: str) -> None:
        last = await self.api.get("/jobs", kind=kind, limit=1)
        params = json.dumps(last[0].get("params") or {}) if last else "{}"
        hint = (f"[dim]as the last {kind} job ran (job {last[0]['id']}); edit, then enter[/]" if last else
                f"[dim]no {kind} job ran yet: write its parameters as JSON, then enter[/]")

        def given(text: str | None) -> None:
            if text is None:
                return
            try:
                body = json.loads(text or "{}")
            except ValueError as exc:
                self.notify(f"parameters must be a JSON object: {exc}", title="Bad parameters", severity="error")
                return
            if not isinstance(body, dict):
                self.notify("parameters must be a JSON object, like {\"view\": \"card_velocity\"}",
                            title="Bad parameters", severity="error")
                return
            self.app.push_screen(Confirm(f"Queue a {kind} job with {json.dumps(body)}?"), lambda yes: yes and (
                self._act("POST", "/jobs", {"kind": kind, "params": body}, f"{kind} job queued")))

        self.app.push_screen(Prompt(f"Parameters of the {kind} job", value=params, hint=hint), given)

    def action_run_pipeline(self) -> None:
        if not self.allowed("running a pipeline"):
            return
        focused = self.focused_table()
        row = focused.selected if focused is not None and focused.id == "schedules" else None
        if row and row.get("type") == "pipeline":
            self.run_pipeline(row["target"])
            return
        self.app.push_screen(Prompt("Pipeline to run"), lambda name: name and self.run_pipeline(name))

    def run_pipeline(self, name: str) -> None:
        """Ask, then run pipeline ``name`` now (``p``, and ``:run NAME``)."""
        if not self.allowed(f"running pipeline {name}"):
            return
        self.app.push_screen(Confirm(f"Run pipeline {name} now?"), lambda yes: yes and self._act(
            "POST", f"/pipelines/{name}/run", {}, f"pipeline {name} started"))

    def action_pause_schedule(self) -> None:
        row = self.pick("schedules", "schedule")
        if row is None:
            return
        verb = "resume" if row.get("paused") else "pause"
        question = (f"Resume schedule {row['name']} ({row.get('schedule')}) from now? The times it missed are "
                    "not caught up." if row.get("paused") else
                    f"Pause schedule {row['name']} ({row.get('schedule')})? It fires nothing until resumed.")
        self.app.push_screen(Confirm(question), lambda yes: yes and self._act(
            "POST", f"/schedules/{row['name']}/{verb}", {"type": row.get("type")}, f"schedule {row['name']} {verb}d"))

    @work(exit_on_error=False, group="action")
    async def _act(self, method: str, path: str, body, done: str) -> None:
        await self.api.request(method, path, body=body if body is not None else {})
        self.notify(done, title="Done")
        self.reload()
