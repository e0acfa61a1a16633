"""One example per hook, rendered into docs/plugins.md under each hook (``python -m appliance.docs``).

This file is a working plugin, ``notes``: tests/test_internals_doc.py loads it into an appliance in strict mode,
so an example that stops working fails a test instead of misleading a reader. Each ``# example: HOOK`` block
ends at the next one (or at the end of the file).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import click

from appliance import (
    BadRequest,
    JobKind,
    Migrations,
    NotFound,
    Option,
    Options,
    Reply,
    Route,
    TuiPanel,
    hookimpl,
)
from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table

APPLIANCE_CONTRACT = "1.1"

# example: register_migrations
migrations = Migrations("notes")


@migrations()
def m001_notes(db):
    db.execute("create table notes_items (id integer primary key, text text not null, time real not null)")


@hookimpl
def register_migrations(register):
    register(migrations)


# example: register_job_kinds
def count_notes(job):
    """Count the notes whose text starts with ``params.prefix``; runs in a worker thread of the daemon."""
    db = job.app.catalog.db
    n = db.execute("select count(*) from notes_items where text like ?", [job.params["prefix"] + "%"]).fetchone()[0]
    job.log(f"{n} note(s) start with {job.params['prefix']!r}")
    return {"count": n}


@hookimpl
def register_job_kinds(register):
    register(JobKind("notes-count", count_notes, description="count notes by prefix",
                     options=Options(Option("prefix", str, "", "count only notes starting with this"))))


# example: register_routes
def list_notes(request):
    limit = request.int_query("limit", 100, minimum=1, maximum=1000)
    rows = request.app.catalog.db.execute("select id, text, time from notes_items order by id desc limit ?",
                                          [limit]).fetchall()
    return {"notes": [{"id": i, "text": t, "time": tm} for i, t, tm in rows]}


def add_note(request):
    text = request.json_object().get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("field 'text' must be a non-empty string")
    note_id = request.app.registry("services").get("notes").add(text)
    return Reply({"id": note_id}, status=201)


def get_note(request):
    row = request.app.catalog.db.execute("select text from notes_items where id = ?",
                                         [request.int_param("id")]).fetchone()
    if row is None:
        raise NotFound(f"no note {request.path_params['id']}")
    return {"id": int(request.path_params["id"]), "text": row[0]}


@hookimpl
def register_routes(register):
    register(Route("GET", "/notes", list_notes, "the newest notes"))
    register(Route("POST", "/notes", add_note, "add a note ({\"text\"})"))
    register(Route("GET", "/notes/{id}", get_note, "one note"))


# example: register_commands
@click.command("notes")
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
def notes_command(ctx, limit, as_json):
    """The newest notes."""
    answer = connect(ctx).get("/notes", limit=limit)
    if as_json:
        return emit_json(answer)
    table([(n["id"], n["text"]) for n in answer["notes"]], ["ID", "TEXT"])


@hookimpl
def register_commands(register):
    register(notes_command)


# example: register_services
class NoteService:
    """Other plugins add notes with ``app.registry("services").get("notes").add(text)``; thread-safe."""

    name = "notes"

    def __init__(self):
        self.app = None  # set in startup
        self._lock = threading.Lock()

    def add(self, text: str) -> int:
        with self._lock:
            cur = self.app.catalog.db.execute("insert into notes_items (text, time) values (?, ?)",
                                              [text, time.time()])
        self.app.events.emit("notes.added", subject=f"note:{cur.lastrowid}", data={"text": text}, source="notes")
        return cur.lastrowid


SERVICE = NoteService()


@hookimpl
def register_services(register):
    register(SERVICE)


# example: register_tui_panels
@hookimpl
def register_tui_panels(register):
    register(TuiPanel("notes", "Notes", "/notes", columns=("id", "text"), rows_key="notes", refresh_s=10,
                      description="the newest notes"))


# example: configure
OPTIONS = Options(
    Option("greeting", str, "", "a note added at every start (none when empty)"),
    Option("note_failed_jobs", bool, True, "add a note for every job that fails for good"),
)
SETTINGS = dict(OPTIONS)


@hookimpl
def configure(app, config):
    settings = config.check_options(OPTIONS, config.section("notes"), "notes")  # file, line and key on a mistake
    SETTINGS.update(settings)  # only once everything is checked


# example: startup
@hookimpl
def startup(app):
    SERVICE.app = app
    if SETTINGS["greeting"]:
        SERVICE.add(SETTINGS["greeting"])


# example: shutdown
@hookimpl
def shutdown(app):
    SERVICE.add(f"stopped after {time.time() - app.started:.0f} s")


# example: on_event
@hookimpl
def on_event(event, app):
    # Runs in this plugin's own thread: a slow sink delays nobody else.
    if SETTINGS["note_failed_jobs"] and event.type == "job.failed" and not event.data.get("will_retry"):
        SERVICE.add(f"job {event.data['job_id']} ({event.data['kind']}) failed: {event.data['error']}")


# example: register_trainers
def fit(ctx):
    import torch  # in the run's child process only: the daemon never imports torch

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = ctx.encoder
            self.linear = torch.nn.Linear(ctx.encoder.out_features, ctx.n_outputs)

        def forward(self, numeric, codes):
            return self.linear(self.encoder(numeric, codes))

    model = Linear().to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), lr=ctx.hp["lr"])
    numeric, codes, y = ctx.tensors("train")
    loss_fn = torch.nn.BCEWithLogitsLoss() if ctx.task == "binary" else torch.nn.MSELoss()
    for epoch in range(1, ctx.hp["epochs"] + 1):
        loss = loss_fn(model(numeric, codes).reshape(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.log_metrics(epoch, {"train_loss": loss.item()})
        ctx.end_epoch(epoch, epoch, ctx.validate(model), {"model": model.state_dict()})
    return model


class LinearTrainer:
    name = "notes_linear"
    tasks = ("binary", "regression")
    description = "full-batch linear model"
    hyperparameters = Options(Option("epochs", int, 5, "passes over the data"),
                              Option("lr", float, 0.1, "learning rate"))
    fit = staticmethod(fit)


@hookimpl
def register_trainers(register):
    register(LinearTrainer())


# example: register_sources
class TabSeparated:
    """``kind = "tsv"``: tab-separated files, with or without a header line."""

    name = "tsv"
    options = Options(Option("header", bool, True, "whether the first line names the columns"))

    def read(self, path, options, columns, source):
        quoted = "'" + path.replace("'", "''") + "'"
        return f"read_csv({quoted}, delim='\\t', header={'true' if options['header'] else 'false'})"


@hookimpl
def register_sources(register):
    register(TabSeparated())


# example: register_monitors
def run_row_count(ctx):
    source = ctx.options["source"]
    if not source.isidentifier():
        raise ValueError(f"not a source name: {source!r}")
    cur = ctx.app.store.cursor()
    rows = cur.execute(f'select count(*) from raw."{source}"').fetchall()[0][0]
    ctx.value("source_rows", rows, source=source)
    ctx.check("too_few_rows", rows < ctx.options["min_rows"],
              f"source {source} has {rows} rows (at least {ctx.options['min_rows']} expected)",
              subject=f"source:{source}", value=rows, threshold=ctx.options["min_rows"])


class RowCount:
    name = "row_count"
    description = "alerts when a source holds fewer rows than expected"
    options = Options(Option("source", str, required=True, doc="the source to count"),
                      Option("min_rows", int, 1, "fewest rows that are fine"))
    run = staticmethod(run_row_count)


@hookimpl
def register_monitors(register):
    register(RowCount())


# example: register_alert_sinks
class JsonLinesSink:
    """``[alert_sinks.NAME] kind = "notes_jsonl"``: each alert change appended to a file as one JSON line."""

    name = "notes_jsonl"
    description = "append alerts to a JSON-lines file"
    options = Options(Option("path", Path, required=True, doc="the file (relative to the project)"))

    def send(self, alert, options):
        with open(options["path"], "a") as f:  # a Path option arrives absolute
            f.write(json.dumps(alert) + "\n")


@hookimpl
def register_alert_sinks(register):
    register(JsonLinesSink())


# example: register_gpu_providers
class NoGpu:
    """``[monitoring] gpu_provider = "notes_none"``: for boxes whose GPU is watched by something else."""

    name = "notes_none"

    def sample(self):
        return {"available": False, "reason": "GPU figures come from the site's own monitoring", "devices": []}


@hookimpl
def register_gpu_providers(register):
    register(NoGpu())


# example: register_metrics_collectors
class NotesCollector:
    name = "notes"

    def collect(self):
        count = SERVICE.app.catalog.db.execute("select count(*) from notes_items").fetchone()[0] if SERVICE.app else 0
        return ("# HELP appliance_notes_total Notes kept by the notes plugin.\n"
                "# TYPE appliance_notes_total gauge\n"
                f"appliance_notes_total {count}\n")


@hookimpl
def register_metrics_collectors(register):
    register(NotesCollector())
