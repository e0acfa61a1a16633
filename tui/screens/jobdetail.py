"""One job: its state, its error in full (a traceback is read whole, not cut), and its log, followed live.

``f`` stops or resumes following (the log stays where it is while you read), ``/`` searches the log (only the
matching lines show), ``q`` or esc goes back.
"""

from __future__ import annotations

import asyncio

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

from ..client import ApiError
from ..widgets.chrome import LineInput
from ..widgets.format import bar, cell, clock, state

#: Lines kept for searching; a job that logs more shows its newest lines.
KEEP = 100_000


class JobDetail(Screen):
    BINDINGS = [Binding("escape,q", "back", "Back"), Binding("f", "follow", "Follow on/off"),
                Binding("slash", "search", "Search log", priority=True), Binding("G", "end", "End of log", show=False)]

    def __init__(self, job_id: int):
        super().__init__()
        self.job_id = job_id
        self.after = 0
        self.lines: list[str] = []
        self.following = True
        self.search = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="job-head", classes="box")
            with VerticalScroll(id="job-error"):
                yield Static(id="job-error-text")
            yield LineInput(placeholder="search the log (esc clears)", id="log-search")
            yield Log(id="job-log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#job-error").display = False
        self.tail()

    @work(exclusive=True, exit_on_error=False, group="tail")
    async def tail(self) -> None:
        while True:
            try:
                job = await self.app.api.get(f"/jobs/{self.job_id}")
                lines = await self.app.api.get(f"/jobs/{self.job_id}/logs", after=self.after, limit=1000)
            except ApiError as exc:
                self.app.report(exc)
                await asyncio.sleep(1.0)
                continue
            self._head(job)
            for line in lines:
                self.after = max(self.after, int(line["seq"]))
                self._add(str(line["line"]))
            if len(self.lines) > KEEP:
                del self.lines[: len(self.lines) - KEEP]
            if job["state"] in ("succeeded", "failed", "cancelled") and not lines:
                return
            await asyncio.sleep(0.5)

    def _head(self, job: dict) -> None:
        follow = "following" if self.following else "[yellow]paused[/] (f follows)"
        self.query_one("#job-head", Static).update(
            f"[b]job {job['id']}[/b] {job['kind']}  {state(job['state'])}  {bar(job.get('progress'), 20)} "
            f"{cell(job.get('message'))}\ncreated {clock(job.get('created'))}  attempt {job.get('attempt')}"
            f"  params {cell(job.get('params'), width=200)}\nlog: {len(self.lines)} lines, {follow}"
            + (f", matching {escape(self.search)!r}" if self.search else ""))
        error = job.get("error")
        box = self.query_one("#job-error")
        box.display = bool(error)
        if error:
            self.query_one("#job-error-text", Static).update(f"[red]{escape(str(error))}[/]")

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if not self.search or self.search in line.lower():
            log = self.query_one(Log)
            log.auto_scroll = self.following
            log.write_line(line)

    def action_back(self) -> None:
        box = self.query_one("#log-search", LineInput)
        if box.has_class("open"):
            box.close()
            self.query_one(Log).focus()
            if self.search:
                self._show_matching("")
            return
        self.dismiss()

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)

    def action_end(self) -> None:
        self.query_one(Log).scroll_end(animate=False)

    def action_search(self) -> None:
        if isinstance(self.focused, Input):
            self.focused.insert_text_at_cursor("/")
        else:
            self.query_one("#log-search", LineInput).open(self.search)

    @on(Input.Changed, "#log-search")
    def _searched(self, event: Input.Changed) -> None:
        self._show_matching(event.value)

    @on(Input.Submitted, "#log-search")
    def _search_done(self) -> None:
        self.query_one(Log).focus()

    def _show_matching(self, text: str) -> None:
        self.search = text.strip().lower()
        log = self.query_one(Log)
        log.clear()
        log.write_lines([line for line in self.lines if not self.search or self.search in line.lower()])
