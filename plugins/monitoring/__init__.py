"""Monitoring and alerts: drift, data quality, model quality, bias, serving health, the GPUs and the box,
watched by scheduled ``monitor`` jobs whose checks raise, dedup, resolve and announce alerts.

Monitor kinds, GPU providers and Prometheus collectors are registries that other plugins extend through the
``register_monitors``, ``register_gpu_providers`` and ``register_metrics_collectors`` hooks; the built-ins below
use exactly those hooks. ``[monitoring] gpu_provider`` picks the provider the GPU figures come from.
"""

from __future__ import annotations

from appliance import JobKind, hookimpl

from . import alerts, api, cli, kinds_model, kinds_system, sinks
from .gpu import NvmlProvider
from .manager import MonitorHistory, Monitors
from .metrics import GpuCollector, MonitorCollector
from .quality import ModelQuality

APPLIANCE_CONTRACT = "1.0"

MONITORS = Monitors()
SINKS = sinks.AlertSinks()
SETTINGS = {"gpu_provider": "nvml"}
_settings = dict(SETTINGS)


def _providers():
    return MONITORS.app.registry("gpu_providers")


class _LazyRegistry:
    """The ``gpu_providers`` registry, looked up when first used (registration runs before ``app`` exists)."""

    def get(self, name):
        return _providers().get(name)

    def names(self):
        return _providers().names()


@hookimpl
def register_migrations(register):
    register(alerts.migrations)


@hookimpl
def register_job_kinds(register):
    register(JobKind("monitor", MONITORS.run_job, description="run one monitor: compute, record, raise/resolve alerts"))


@hookimpl
def register_services(register):
    register(MonitorHistory(MONITORS))
    register(ModelQuality())


@hookimpl
def register_monitors(register):
    for kind in kinds_model.KINDS + kinds_system.kinds(_LazyRegistry()):
        register(kind)


@hookimpl
def register_gpu_providers(register):
    register(NvmlProvider())


@hookimpl
def register_metrics_collectors(register):
    register(MonitorCollector(MONITORS))
    register(GpuCollector(_LazyRegistry(), lambda: _settings["gpu_provider"]))


@hookimpl
def register_routes(register):
    for route in api.routes(MONITORS, SINKS):
        register(route)


@hookimpl
def register_commands(register):
    for command in cli.COMMANDS:
        register(command)


@hookimpl
def configure(app, config):
    section = config.section("monitoring")
    for key, value in section.items():
        if key not in SETTINGS:
            raise config.error(f"unknown key; [monitoring] takes: {', '.join(SETTINGS)}", "monitoring", key)
        if not isinstance(value, str):
            raise config.error(f"expected a string, got {value!r}", "monitoring", key)
    provider = section.get("gpu_provider", SETTINGS["gpu_provider"])
    if provider not in app.registry("gpu_providers"):
        raise config.error(f"no GPU provider {provider!r}; registered: "
                           f"{', '.join(app.registry('gpu_providers').names())}", "monitoring", "gpu_provider")
    sink_specs = sinks.read_specs(config, app.registry("alert_sinks"))
    MONITORS.configure(app, config)
    SINKS.use(app, sink_specs)
    _settings["gpu_provider"] = provider


@hookimpl
def startup(app):
    MONITORS.startup(app)


@hookimpl
def shutdown(app):
    MONITORS.shutdown()
    SINKS.shutdown()


@hookimpl
def on_event(event, app):
    if MONITORS.app is not None:
        MONITORS.alerts.take_event(event)
        SINKS.take_event(event)
