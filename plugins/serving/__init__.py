"""Serving: registered models over the Open Inference Protocol (KServe/Triton), with hot swaps, dynamic
batching, online features, a prediction log, shadow traffic and Prometheus metrics.

It runs its own HTTP server on its own port (``[serving] port``, loopback by default) so that inference
never queues behind the control API, and finds models through the ``model_registry`` service.
"""

from __future__ import annotations

import logging
import sys

from appliance import hookimpl

from . import settings as settings_mod
from .api import COMMANDS, ROUTES

APPLIANCE_CONTRACT = "1.0"

log = logging.getLogger("appliance.serving")


class _State:
    settings: settings_mod.ServingSettings | None = None
    manager = None
    server = None
    predlog = None
    metrics = None
    feedback = None


state = _State()


@hookimpl
def configure(app, config):
    new = settings_mod.read(config)
    state.settings = new
    if state.manager is not None:
        state.manager.apply(new.deployments)


@hookimpl
def startup(app):
    from appliance import __version__

    from .deployments import DeploymentManager
    from .feedback import FeedbackQueue, feedback_token
    from .metrics import ServingMetrics
    from .predlog import PredictionLog
    from .server import ServingApp, ServingServer

    cfg = state.settings or settings_mod.ServingSettings()
    # Serving shares the daemon's GIL with background threads (prediction log, monitors, jobs). Python's default
    # 5 ms switch interval lets one of them hold a request up for that long; 1 ms keeps the tail short.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    state.metrics = ServingMetrics()
    state.feedback = FeedbackQueue(cfg.feedback_max_pending)
    state.predlog = PredictionLog(app.store, max_pending=cfg.log_max_pending, feedback=state.feedback,
                                  on_dropping=lambda n, reason: _log_dropping(app, n, reason))
    state.predlog.start()
    state.manager = DeploymentManager(app, state.metrics)
    handler = ServingApp(state.manager, state.metrics, state.predlog, version=__version__,
                         features=lambda: app.registry("services").get("online_features"),
                         collected_metrics=lambda: _collected_metrics(app), feedback_queue=state.feedback,
                         feedback_token=feedback_token(app.home.root))
    state.manager.on_batch_answered = handler.batch_answered
    state.server = ServingServer(handler, cfg.host, cfg.port, cfg.limits)
    handler.connection_stats = state.server.stats
    state.server.start()
    app.ports["serving"] = state.server.port
    state.manager.start()
    state.manager.apply(cfg.deployments)


def _log_dropping(app, dropped: int, reason: str) -> None:
    app.events.emit("alert.raised", subject="serving:prediction-log",
                    data={"rule": "prediction_log_dropping", "severity": "warning",
                          "message": f"the prediction log left out {dropped} requests: {reason}; their answers were "
                                     "sent, but monitoring will not see them"})


def _collected_metrics(app) -> str:
    """Every ``register_metrics_collectors`` collector's text; one that raises is left out and logged."""
    parts = []
    for name, collector in app.registry("metrics_collectors").items():
        try:
            parts.append(collector.collect())
        except Exception:
            log.exception("metrics collector %s failed", name)
    return "".join(parts)


@hookimpl
def shutdown(app):
    if state.server:
        state.server.stop()
    if state.manager:
        state.manager.stop()
    if state.predlog:
        state.predlog.stop()


@hookimpl
def on_event(event, app):
    if state.manager is None:
        return
    if event.type == "model.alias_moved":
        state.manager.alias_moved(event.data.get("name"), event.data.get("alias"))
    elif event.type == "model.registered":
        state.manager.registered(event.data.get("name"))


@hookimpl
def register_routes(register):
    for route in ROUTES:
        register(route)


@hookimpl
def register_commands(register):
    for command in COMMANDS:
        register(command)
