"""``appliance plugin new NAME``: an installable third-party plugin package to start from.

The package has the ``appliance`` entry point in its ``pyproject.toml``, one example of each kind of hook
(registration, ``configure``, ``startup``/``shutdown``, ``on_event``) and tests that start real daemons through
the ``appliance_daemon`` fixture the appliance ships for plugin authors (``appliance.pytest_plugin``).
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from pathlib import Path
from string import Template

from .contract import CONTRACT_VERSION
from .errors import ApplianceError, BadRequest, Conflict

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: What ``appliance init`` writes: every section named, with a commented example; docs/config.md has every key.
PROJECT_TEMPLATE = """\
# The appliance project: keep this file in git. `appliance up --project .` serves it; after an edit,
# `appliance apply --dry-run` shows what would change and `appliance apply` applies it.
# Every table and key, with its type, default and meaning: docs/config.md in the appliance repository.

[daemon]
host = "127.0.0.1"      # loopback only; serving to a LAN needs --allow-remote
port = 7870
workers = 4             # jobs running at once
gpu_slots = 1           # GPU jobs running at once
drain_seconds = 10      # on stop, how long running jobs may finish
sink_timeout_s = 30     # a plugin's event sink stuck longer than this on one event is reported

[plugins]
allow = []              # when set, only these third-party plugins load (failures become errors)
deny = []               # plugins never to load (built-ins too)

[ingest]
data_dirs = ["data"]    # every file a source names lies under one of these

# ---- sources: files in, checked, into raw.NAME (bad rows to quarantine.NAME) --------------------------------
# [sources.flights]
# kind = "csv"
# path = "data/flights.csv"            # or glob = "data/flights/*.csv", or watch = "data/incoming"
# null_values = ["NA", ""]             # text that means a missing value, not a broken row
# timestamp_format = "%Y-%m-%d %H:%M:%S"
# [sources.flights.columns]
# origin = { type = "VARCHAR", nullable = false }
# dep_delay = "DOUBLE"
# time_hour = "TIMESTAMP"

# ---- entities and feature views: features per key, point in time correct -------------------------------------
# [entities.airport]
# join_keys = ["origin"]
# [feature_views.weather]
# source = "raw.weather"
# entities = ["airport"]
# event_time = "time_hour"
# ttl = "3h"                           # older values read as missing
# features = ["temp", "wind_speed"]

# ---- training: appliance training-sets build NAME ..., then appliance train NAME ---------------------------
# [training.delays]
# training_set = "delays"
# label = "delayed"                    # rows without a label are left out, and counted
# task = "binary"
# model = "delays"
# alias = "champion"                   # moves only to a version that beats its holder (gate = "none": always)

# ---- registry: a gate on every promotion of a model's aliases --------------------------------------------------
# [registry.models.delays.gate]
# metric = "auc"

# ---- serving: the Open Inference Protocol on its own port -----------------------------------------------------
# [serving]
# port = 8000
# [deployments.delays]
# model = "delays@champion"

# ---- monitors: drift, quality, performance from feedback, serving health, GPU, the box -----------------------
# [monitors.delays_performance]
# kind = "performance"
# deployment = "delays"
# output = "probabilities[1]"
# every_s = 300

# ---- pipelines and schedules: jobs in order, on cron or intervals ----------------------------------------------
# [pipelines.nightly]
# schedule = { cron = "0 2 * * *" }
# [[pipelines.nightly.steps]]
# name = "ingest"
# kind = "ingest"
# params = { source = "flights" }

# ---- backup and retention ---------------------------------------------------------------------------------------
# [backup]
# every_hours = 24
# keep = 7
# [retention]
# predictions_days = 30
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$name: a plugin for appliance"
requires-python = ">=3.11"
dependencies = ["appliance"]

# How the appliance finds the plugin once it is installed: `appliance plugins` lists it as an entry point.
[project.entry-points.appliance]
$name = "$name"

[tool.setuptools]
packages = ["$name"]

[tool.pytest.ini_options]
testpaths = ["tests"]
# Fail any test whose appliance recorded a plugin failure (a hook that raised, the plugin disabled).
appliance_strict = true
"""

README = """\
# $name

A plugin for appliance. Install it next to the appliance and restart the daemon:

    pip install -e .
    appliance down && appliance up
    appliance plugins            # $name: entrypoint, loaded
    appliance $name-hello

Its tests use the fixtures that come with the appliance: `appliance_app` builds the appliance in the test's
process (milliseconds), `appliance_daemon` starts a real daemon with the plugin loaded (seconds; it has the CLI):

    pytest

Edit the plugin while a daemon runs it as a drop-in and `appliance plugin reload $name` picks the change up.
"""

PLUGIN = '''\
"""$name: a plugin for appliance, with one example of each kind of hook; keep the ones you need.

The hooks are documented in the appliance's docs/plugins.md. Settings come from the project's
``appliance.toml`` table ``[$name]``.
"""

from __future__ import annotations

import time

import click

from appliance import JobKind, Migrations, Option, Options, Route, hookimpl
from appliance.cli import connect
from appliance.cli.output import emit_json, json_option

#: The contract this plugin was written for; the appliance refuses to load it if they are incompatible.
APPLIANCE_CONTRACT = "$contract"

#: What ``[$name]`` in appliance.toml may hold; the host checks it (file, line and key on a mistake).
OPTIONS = Options(Option("greeting", str, "hello", "how to greet"))
#: The settings in effect; ``configure`` replaces them only once the new ones are checked.
SETTINGS = dict(OPTIONS)
#: Jobs this plugin has seen finish (counted by its ``on_event`` sink, which runs in its own thread).
SEEN = {"jobs_finished": 0}

migrations = Migrations("$name")


@migrations()
def m001_greetings(db):
    db.execute("create table ${name}_greetings (id integer primary key, who text not null, time real not null)")


def greet(job):
    """The ``$name-greet`` job: record a greeting in the catalog and return it."""
    who = job.params["who"]
    job.app.catalog.db.execute("insert into ${name}_greetings (who, time) values (?, ?)", [who, time.time()])
    job.log(f"greeted {who}")
    return {"message": f"{SETTINGS['greeting']}, {who}"}


def hello(request):
    """``GET /api/v1/$name/hello?who=NAME``."""
    db = request.app.catalog.db
    return {"message": f"{SETTINGS['greeting']}, {request.query.get('who', 'world')}",
            "greetings": db.execute("select count(*) from ${name}_greetings").fetchone()[0],
            "jobs_finished": SEEN["jobs_finished"]}


@click.command("$name-hello")
@click.option("--who", default="world", show_default=True)
@json_option
@click.pass_context
def hello_command(ctx, who, as_json):
    """Ask the daemon's $name plugin for a greeting."""
    answer = connect(ctx).get("/$name/hello", who=who)
    if as_json:
        return emit_json(answer)
    click.echo(answer["message"])


# ------------------------------------------------------------------------------------------- registration


@hookimpl
def register_migrations(register):
    register(migrations)


@hookimpl
def register_job_kinds(register):
    register(JobKind("$name-greet", greet, description="record a greeting",
                     options=Options(Option("who", str, "world", "whom to greet"))))


@hookimpl
def register_routes(register):
    register(Route("GET", "/$name/hello", hello, "a greeting from $name"))


@hookimpl
def register_commands(register):
    register(hello_command)


# ------------------------------------------------------------------------------------------- lifecycle


@hookimpl
def configure(app, config):
    settings = config.check_options(OPTIONS, config.section("$name"), "$name")
    if not settings["greeting"]:
        raise config.error("expected a greeting, got an empty string", "$name", "greeting")
    SETTINGS.update(settings)


@hookimpl
def startup(app):
    app.events.emit("$name.started", subject="plugin:$name", data={"greeting": SETTINGS["greeting"]})


@hookimpl
def shutdown(app):
    app.events.emit("$name.stopped", subject="plugin:$name", data={"jobs_finished": SEEN["jobs_finished"]})


# ------------------------------------------------------------------------------------------- events


@hookimpl
def on_event(event, app):
    if event.type in ("job.succeeded", "job.failed", "job.cancelled"):
        SEEN["jobs_finished"] += 1
'''

TESTS = '''\
"""Tests in-process (``appliance_app``, milliseconds) and against real daemons (``appliance_daemon``, seconds);
both fixtures come with the appliance (pytest11)."""

import pytest

import $name


def test_route_and_job_in_process(appliance_app):
    app = appliance_app('[$name]\\ngreeting = "hey"\\n', plugins=[$name])
    assert app.wait_job(app.submit("$name-greet")["id"])["result"] == {"message": "hey, world"}
    assert app.get("/$name/hello", params={"who": "you"}).json()["greetings"] == 1
    assert app.post("/jobs", {"kind": "$name-greet", "params": {"who": 7}}).status_code == 400


def test_the_plugin_loads_from_its_entry_point(appliance_daemon):
    d = appliance_daemon()
    plugins = {p["name"]: p for p in d.get("/plugins").json()["plugins"]}
    assert (plugins["$name"]["source"], plugins["$name"]["status"]) == ("entrypoint", "loaded")
    assert d.events(type="$name.started")[-1]["data"] == {"greeting": "hello"}


def test_route_job_command_and_event_sink(appliance_daemon):
    d = appliance_daemon('[$name]\\ngreeting = "hi"\\n')
    job = d.wait_job(d.submit("$name-greet", {"who": "tests"})["id"])
    assert (job["state"], job["result"]) == ("succeeded", {"message": "hi, tests"})
    answer = d.get("/$name/hello", params={"who": "you"}).json()
    assert answer["message"] == "hi, you" and answer["greetings"] == 1
    out = d.cli("$name-hello", "--who", "cli")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hi, cli"
    assert d.get("/$name/hello").json()["jobs_finished"] >= 1


def test_a_bad_setting_is_refused_naming_its_line(appliance_daemon):
    with pytest.raises(RuntimeError) as err:
        appliance_daemon('[$name]\\ngreeting = 42\\n')
    assert "appliance.toml:2: $name.greeting: expected a string, got int 42" in str(err.value)
'''


def check_name(name: str) -> None:
    """Refuse a name the package could not safely have: it is the import name of the package, the plugin's
    name in ``appliance plugins`` and ``[plugins] allow``, and the prefix of its catalog tables."""
    from .host import DEFAULT_PLUGINS

    if not _NAME.match(name) or keyword.iskeyword(name):
        raise BadRequest(f"plugin name {name!r} must be a Python identifier in lowercase (letters, digits, "
                         "underscores; starting with a letter), such as 'slack_alerts'")
    if name in ("appliance", "plugins", "tui") or name.startswith("appliance_dropin_"):
        why = "is the appliance's own package"
    elif name in {m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS}:
        why = "is a built-in plugin; two plugins of one name cannot both load"
    elif name.startswith("sqlite_"):
        why = "starts with sqlite_, a prefix SQLite reserves for its own tables (the plugin's tables are named after it)"
    elif name in sys.stdlib_module_names or importlib.util.find_spec(name) is not None:
        why = f"would shadow the module {name!r}, which is already importable here"
    else:
        return
    raise BadRequest(f"plugin name {name!r} {why}; choose another, such as '{name}_plugin' or 'my_{name}'",
                     title="Name taken")


def new_plugin(name: str, directory: Path) -> Path:
    """Write the package for plugin ``name`` into ``directory/name``; returns that path."""
    check_name(name)
    root = Path(directory) / name
    if root.exists():
        raise Conflict(f"{root} already exists; choose another name or --dir")
    values = {"name": name, "dist": name.replace("_", "-"), "contract": CONTRACT_VERSION}
    files = {"pyproject.toml": PYPROJECT, "README.md": README, f"{name}/__init__.py": PLUGIN,
             f"tests/test_{name}.py": TESTS}
    try:
        for rel, template in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(Template(template).substitute(values))
    except OSError as exc:
        raise ApplianceError(f"could not write the plugin package to {root}: {exc.strerror or exc}",
                             title="Cannot write") from None
    return root
