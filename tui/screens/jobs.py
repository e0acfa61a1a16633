"""Jobs and pipelines: the queue and history (paged from the daemon), schedules, live log tail, run and cancel."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from ..client import ApiError
from ..widgets.format import ago, bar, cell, clock, state, until
from ..widgets.table import Column, PagedTable
from .base import AreaScreen
from .modals import Confirm, Prompt

PAGE = 200


class JobsScreen(AreaScreen):
    AREA = "jobs"
    EVENTS = ("job.", "pipeline.")
    BINDINGS = [
        Binding("enter", "details", "Details / log"),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("n", "new_job", "Run job"),
        Binding("p", "run_pipeline", "Run pipeline"),
    ]

    def body(self) -> ComposeResult:
        now = lambda: self.app.clock()  # noqa: E731 - the app's clock is frozen in snapshot tests
        yield PagedTable([Column("id", "Job"), Column("kind", "Kind"),
                          Column("state", "State", lambda r: state(r.get("state"))),
                          Column("progress", "Progress", lambda r: bar(r.get("progress"), 10)),
                          Column("attempt", "Try"), Column("created", "Created", lambda r: ago(r.get("created"),
                                                                                             now())),
                          Column("origin", "Origin"), Column("error", "Error")], id="jobs")
        yield Static("Schedules", classes="heading")
        yield Static(id="schedules-missing", classes="missing")
        yield PagedTable([Column("name", "Schedule"), Column("type", "Type"), Column("target", "Target"),
                          Column("schedule", "When"),
                          Column("next_fire", "Next", lambda r: until(r.get("next_fire"), now())),
                          Column("last_fire", "Last", lambda r: ago(r.get("last_fire"), now()))],
                         id="schedules")

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

    def _job(self) -> dict | None:
        job = self.query_one("#jobs", PagedTable).selected
        if job is None:
            self.notify("no job selected", severity="warning")
        return job

    def action_details(self) -> None:
        if job := self._job():
            self.app.push_screen(JobDetail(job["id"]))

    def action_cancel_job(self) -> None:
        job = self._job()
        if job is None or not self.allowed(f"cancelling job {job['id']}"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("POST", f"/jobs/{job['id']}/cancel", None, f"job {job['id']} cancelled")

        self.app.push_screen(Confirm(f"Cancel job {job['id']} ({job['kind']}, {job['state']})?"), answered)

    def action_new_job(self) -> None:
        if not self.allowed("running a job"):
            return

        def kind_given(kind: str | None) -> None:
            if kind:
                self.app.push_screen(Confirm(f"Queue a {kind} job?"), lambda yes: yes and self._act(
                    "POST", "/jobs", {"kind": kind}, f"{kind} job queued"))

        self.app.push_screen(Prompt("Job kind to run", placeholder="a registered job kind"), kind_given)

    def action_run_pipeline(self) -> None:
        if not self.allowed("running a pipeline"):
            return
        row = self.query_one("#schedules", PagedTable).selected
        default = row["target"] if row and row.get("type") == "pipeline" else ""

        def name_given(name: str | None) -> None:
            if name:
                self.app.push_screen(Confirm(f"Run pipeline {name} now?"), lambda yes: yes and self._act(
                    "POST", f"/pipelines/{name}/run", {}, f"pipeline {name} started"))

        self.app.push_screen(Prompt("Pipeline to run", value=default), name_given)

    @work(exit_on_error=False, group="action")
    async def _act(self, method: str, path: str, body, done: str) -> None:
        await self.api.request(method, path, body=body if body is not None else {})
        self.notify(done, title="Done")
        self.reload()


class JobDetail(Screen):
    """One job and its log, tailed live until it finishes; esc goes back."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, job_id: int):
        super().__init__()
        self.job_id = job_id
        self.after = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="job-head", classes="box")
            yield Log(id="job-log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.tail()

    @work(exclusive=True, exit_on_error=False)
    async def tail(self) -> None:
        log = self.query_one(Log)
        while True:
            try:
                job = await self.app.api.get(f"/jobs/{self.job_id}")
                lines = await self.app.api.get(f"/jobs/{self.job_id}/logs", after=self.after, limit=1000)
            except ApiError as exc:
                self.app.report(exc)
                await asyncio.sleep(1.0)
                continue
            self.query_one("#job-head", Static).update(
                f"[b]job {job['id']}[/b] {job['kind']}  {state(job['state'])}  {bar(job.get('progress'), 20)} "
                f"{cell(job.get('message'))}\ncreated {clock(job.get('created'))}  attempt {job.get('attempt')}"
                f"  params {cell(job.get('params'))}\n"
                + (f"[red]{cell(job.get('error'))}[/]" if job.get("error") else ""))
            for line in lines:
                self.after = max(self.after, int(line["seq"]))
                log.write_line(str(line["line"]))
            if job["state"] in ("succeeded", "failed", "cancelled") and not lines:
                return
            await asyncio.sleep(0.5)
