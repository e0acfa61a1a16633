"""The plugin contract: every hook a plugin can implement.

Each spec's docstring is its documentation (``docs/plugins.md`` is checked against it). Built-in plugins in
``plugins/`` use exactly these hooks, as any third-party plugin does. A plugin module declares the contract it
targets with ``APPLIANCE_CONTRACT = "1.0"`` and marks implementations with ``@appliance.hookimpl``.

Registration hooks take a ``register`` callback; the host owns each registry and refuses a second object with
the same name, naming both plugins. Hooks are called one implementation at a time: an implementation that raises
is recorded against its plugin (with the traceback) and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .app import Appliance
    from .config import Config
    from .contract import Event, JobKind, Route, TuiPanel
    from .migrations import Migrations

hookspec = pluggy.HookspecMarker("appliance")

# ---------------------------------------------------------------------------------------------------------------
# Registration: called once when the plugin loads, before the daemon takes work.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def register_migrations(register: Callable[[Migrations], None]) -> None:
    """Register a named set of catalog migrations.

    ``register(migrations)`` takes an ``appliance.Migrations("set-name")`` whose steps are functions decorated
    with ``@migrations()``; each step runs once, in order, inside the daemon's ``catalog.db`` (a
    ``sqlite_utils.Database``) and is recorded by set and name. Use it for the plugin's own catalog tables.
    """


@hookspec
def register_job_kinds(register: Callable[[JobKind], None]) -> None:
    """Register kinds of long work with ``register(appliance.JobKind(name, run, ...))``.

    A job kind is what the runner executes when a job of that name is submitted (through the API, the CLI, a
    schedule or a pipeline step). Set ``gpu=True`` for work that needs the GPU gate and ``process=True`` for work
    that must run in a spawned child process (anything heavy or crash-prone). ``options=appliance.Options(...)``
    declares the params it takes: a job submitted with an unknown or mistyped param is refused naming it, a
    pipeline step's or schedule's ``params`` are checked with file, line and key, and ``job.params`` arrives
    completed with the defaults.
    """


@hookspec
def register_routes(register: Callable[[Route], None]) -> None:
    """Register control API routes with ``register(appliance.Route(method, path, handler))``.

    Paths are relative to ``/api/v1``; the token, Host and Origin checks apply to them as to every core route.
    Handlers receive an ``appliance.ApiRequest`` (``.app``, ``.path_params``, ``.query``, ``.json()``).
    """


@hookspec
def register_commands(register: Callable[[click.Command], None]) -> None:
    """Register ``appliance`` CLI commands with ``register(click_command)``.

    Commands run in the user's shell, not in the daemon: they talk to the daemon through
    ``appliance.cli.client.Client`` (the control API), never by opening a store.
    """


@hookspec
def register_services(register: Callable[[Any], None]) -> None:
    """Offer an in-daemon object to other plugins with ``register(service)`` (it needs a ``name``).

    This is how built-ins meet without importing each other: the feature store registers its online store, the
    serving plugin finds it with ``app.registry("services").get("online_features")``. Services are called from
    many threads, so they must be thread-safe.
    """


@hookspec
def register_tui_panels(register: Callable[[TuiPanel], None]) -> None:
    """Add a panel to the dashboard with ``register(appliance.TuiPanel(name, title, route, ...))``.

    A panel is data, not a widget, so plugins never import textual: the dashboard reads ``route`` (a ``GET``
    path under ``/api/v1``, usually one the plugin registers with ``register_routes``) every ``refresh_s``
    seconds and renders the answer. ``kind="table"`` shows a list of objects (or the list under ``rows_key`` of
    an object) with ``columns`` as its columns (every key of the first row when empty); ``kind="keyvalue"``
    shows an object's keys and values. The daemon lists registered panels at ``GET /api/v1/tui/panels``; a
    route that fails shows its error in the panel, never in the rest of the dashboard.
    """


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle: called in the daemon.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def startup(app: Appliance) -> None:
    """The daemon has opened its stores and is about to take work.

    ``app`` is the plugin's handle on the box: ``app.home``, ``app.config``, ``app.settings(name)``,
    ``app.catalog``, ``app.store`` (DuckDB, a cursor per thread), ``app.artifacts``, ``app.events``, ``app.jobs``
    (all in docs/internals.md). Start background threads here, and stop them in ``shutdown``. A plugin whose
    ``startup`` raises is disabled (its routes, job kinds and sink withdrawn, its ``shutdown`` never called) and
    shown ``failed``; the daemon carries on.
    """


@hookspec
def configure(app: Appliance, config: Config) -> None:
    """Check and take in the plugin's part of the project's ``appliance.toml``.

    Called before ``startup`` and again on every ``appliance apply`` with the newly read ``config``. Check the
    plugin's table with ``config.check_options(options, config.section("my_plugin"), "my_plugin")``, or raise
    ``config.error(message, "table", "key")`` (a ``ConfigError`` naming file, line and key) to refuse it: at
    start the daemon refuses to start, on ``apply`` the running configuration stays as it was. Only the last
    call that raised nothing should take effect, so validate everything before changing any state. Any other
    exception is a bug, not a verdict on the file: the plugin is disabled and the daemon carries on.
    """


@hookspec
def shutdown(app: Appliance) -> None:
    """The daemon has stopped taking work and drained its jobs; the stores close after this hook."""


# ---------------------------------------------------------------------------------------------------------------
# Events: called in the daemon, one thread per plugin.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def on_event(event: Event, app: Appliance) -> Any:
    """Receive every event after it is persisted (a sink: log it, post it to Slack, page someone).

    Each plugin's sink runs in its own thread with its own bounded queue (an ``appliance.Outbox``), so a slow,
    hanging or raising sink never delays the daemon or another sink. A sink busy on one event for longer than
    ``[daemon] sink_timeout_s`` (30 s) is reported against its plugin while it is still stuck; events that
    overflow a stuck sink's queue are dropped for that sink only and the drop is recorded too.
    """


# ---------------------------------------------------------------------------------------------------------------
# Training: called once when the plugin loads, like the other registration hooks.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def register_trainers(register: Callable[[Any], None]) -> None:
    """Register a way to train models with ``register(trainer)``; a training spec picks one by ``trainer = NAME``.

    A trainer is any object with ``name`` (str), ``tasks`` (the tasks it can do, among ``"binary"``,
    ``"multiclass"``, ``"regression"``), ``hyperparameters`` (``appliance.Options``, or a plain dict of defaults
    whose each value's type is checked against the default's: its keys are the only ones a spec or ``--set``
    may give), ``description`` and
    ``fit``: a module-level function that runs in the run's spawned child process (never in the daemon, so it
    may import torch at will) and is called as ``fit(ctx)``. ``ctx`` offers ``task``, ``hp`` (the merged
    hyperparameters), ``seed``, ``device``, ``mixed_precision``, ``n_outputs``, ``class_counts``, ``encoder``
    (a torch module taking raw ``(numeric, codes)`` batches to float features, with the training statistics
    folded in), ``tensors(part)`` (``(numeric, codes, y)`` on the device for ``"train"``, ``"validation"`` or
    ``"holdout"``), ``log_metrics(step, {name: value})``, ``validate(net)`` (validation metrics),
    ``end_epoch(epoch, step, metrics, state)`` (records the epoch and checkpoints ``state``: tensors and plain
    values only, loaded back with ``weights_only=True``), ``resume`` (``None``, or ``{"epoch", "step",
    "state"}`` of the checkpoint a resumed run continues from) and ``log(line)``. ``fit`` returns a torch
    module mapping ``(numeric, codes)`` to logits (classification; one for binary) or the standardized
    prediction (regression); the platform adds the output transform, exports it to ONNX and checks it.
    """


# ---------------------------------------------------------------------------------------------------------------
# Data: called once when the plugin loads, like the registration hooks above.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def register_sources(register: Callable[[Any], None]) -> None:
    """Register a kind of source file with ``register(kind)``; ``[sources.NAME] kind = "..."`` names it.

    ``kind`` is any object with a ``name`` (``csv``, ``parquet``, ``jsonl`` and ``json`` are built in), the
    ``options`` a source of its kind takes (``appliance.Options``: keys of ``[sources.NAME]`` besides the common
    ``kind``, ``path``/``glob``/``watch``, ``pattern``, ``columns``, ``unique``, ``mostly``, ``label`` and
    ``guard``, checked with file, line and key) and ``read(path, options, columns, source) -> str``, which returns
    a DuckDB table expression reading the file at the absolute ``path``, such as
    ``"read_csv('/data/a.csv', header=true)"`` (quote the path as a SQL string, doubling single quotes).
    ``options`` is the source's options merged over their defaults; ``source`` is the source's name (a ``read``
    without that argument is called without it; a kind without ``options`` gets ``delimiter`` and ``header``
    as contract 1.0 did). ``columns`` is ``None`` (read the
    file's own columns) or a list of ``(name, type)`` to read, typed as given where the reader can do so; the
    ingest engine checks and casts whatever comes back, quarantining the values that do not fit, so a kind may
    ignore it. Set ``exact_types = True`` on a kind whose files carry exact column types (as Parquet does), so
    files whose types match the source are taken without a cast. Called in the daemon and in CLI processes.
    """


# ---------------------------------------------------------------------------------------------------------------
# Monitoring: called once when the plugin loads, like the registration hooks above.
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def register_monitors(register: Callable[[Any], None]) -> None:
    """Register a kind of monitor with ``register(kind)``; ``[monitors.NAME] kind = "..."`` names it.

    ``kind`` is any object with ``name`` (str), ``description``, ``options`` (``appliance.Options``, each option
    checked as declared; or a plain dict of every key to its default, each taking its default's type; the
    project's table is checked against them, along with the common keys ``kind``, ``every_s``, ``severity``,
    ``pipeline`` and ``enabled``), optionally ``required`` (keys that must be given) and ``run(ctx)``. ``run`` executes inside a ``monitor`` job in the daemon (it may read the stores) and
    reports through ``ctx``: ``ctx.app``, ``ctx.monitor`` (the monitor's name), ``ctx.options`` (merged over the
    defaults), ``ctx.job``, ``ctx.value(metric, number, **labels)`` (exported to Prometheus as
    ``appliance_monitor_<metric>``), ``ctx.check(name, firing, message, subject=..., severity=..., value=...,
    threshold=...)`` (an alert rule ``<monitor>.<name>``: firing raises or keeps one alert per rule and subject,
    not firing resolves it), ``ctx.details`` (a JSON-able dict kept with the run) and ``ctx.no_data(why)`` (too
    little data to judge: open alerts stay as they are). An exception fails the run and its job.
    """


@hookspec
def register_alert_sinks(register: Callable[[Any], None]) -> None:
    """Register a kind of alert sink with ``register(kind)``; ``[alert_sinks.NAME] kind = "..."`` configures one.

    ``kind`` has ``name``, ``description``, ``options`` (``appliance.Options``: what an ``[alert_sinks.NAME]``
    table of this kind takes besides the common ``kind``, ``events``, which of ``"raised"``, ``"resolved"`` and
    ``"acked"`` to send (all by default), and ``min_severity``; checked with file, line and key) and
    ``send(alert, options)``. ``alert`` is a dict: ``id``, ``event`` (raised, resolved or acked), ``rule``,
    ``subject``, ``severity``, ``message``, ``monitor``, ``value``, ``threshold``, ``count``, ``time``;
    ``options`` is the table merged over the defaults. Each configured sink sends from a thread of its own
    (an ``appliance.Outbox``), so a slow endpoint delays nothing else; an exception is recorded against the
    plugin, and a call busy past ``[daemon] sink_timeout_s`` is reported while it is still stuck.
    """


@hookspec
def register_gpu_providers(register: Callable[[Any], None]) -> None:
    """Register a source of GPU figures with ``register(provider)``; ``[monitoring] gpu_provider`` picks one.

    ``provider`` has ``name`` (the built-in is ``"nvml"``) and ``sample()``, which returns
    ``{"available": bool, "reason": str, "devices": [...]}`` and must not raise when there is no GPU (it says
    so in ``reason``). Each device is a dict with ``index``, ``name``, ``temperature_c``, ``power_w``,
    ``power_limit_w``, ``memory_used_bytes``, ``memory_total_bytes``, ``utilization_pct``, ``throttle_reasons``
    (a list of NVML reason names such as ``"hw_thermal_slowdown"``), ``ecc_uncorrected`` and ``processes``
    (``[{"pid", "memory_bytes"}]``); a figure the device cannot report is ``None``. Called from any thread.
    """


@hookspec
def register_metrics_collectors(register: Callable[[Any], None]) -> None:
    """Add series to the Prometheus pages with ``register(collector)``.

    ``collector`` has ``name`` and ``collect() -> str``, text in Prometheus' exposition format (``# HELP``,
    ``# TYPE`` and sample lines, ending in a newline). Every collector's text is appended to the serving port's
    ``/metrics`` and served at ``GET /api/v1/metrics``. ``collect`` may run on an event loop: return quickly
    from figures already at hand. A collector that raises is left out of that page and logged.
    """
