"""Every key appliance.toml takes, as the code declares it today: one place that docs/config.md is checked
against (tests/test_config_docs.py). Each entry is a table as docs/config.md heads it, with its keys and, where
the code keeps them in one dict, their defaults. When plugins declare option schemas, this reads those."""

from __future__ import annotations

from typing import Any


def declared() -> dict[str, tuple[set[str], dict[str, Any] | None]]:
    from appliance.config import DAEMON_KEYS, PLUGIN_KEYS
    from plugins.backup import DEFAULTS as BACKUP
    from plugins.features.definitions import ENTITY_KEYS, VIEW_KEYS, WINDOW_KEYS
    from plugins.ingest.kinds import CsvKind
    from plugins.ingest.settings import GUARD_KEYS, INGEST_KEYS, RULE_KEYS, SOURCE_KEYS
    from plugins.monitoring import SETTINGS as MONITORING
    from plugins.monitoring import kinds_model, kinds_system
    from plugins.monitoring.manager import COMMON
    from plugins.monitoring.sinks import COMMON as SINK_KEYS
    from plugins.pipelines.spec import (
        JOB_SCHEDULE_KEYS,
        PIPELINE_KEYS,
        SCHEDULE_KEYS,
        STEP_KEYS,
        TRIGGER_KEYS,
    )
    from plugins.registry.store import GATE_KEYS
    from plugins.retention import DEFAULTS as RETENTION
    from plugins.serving.settings import DEPLOYMENT_KEYS, SERVING_KEYS
    from plugins.training.mlp import HYPERPARAMETERS
    from plugins.training.spec import DEFAULTS, SPEC_KEYS, SPLIT_DEFAULTS, SWEEP_DEFAULTS

    out: dict[str, tuple[set[str], dict[str, Any] | None]] = {
        "daemon": (set(DAEMON_KEYS), None),
        "plugins": (set(PLUGIN_KEYS), None),
        "ingest": (set(INGEST_KEYS), None),
        # A csv source's reading options are the csv kind's declared options, documented with the source table.
        "sources.NAME": (set(SOURCE_KEYS) | set(CsvKind().options), None),
        "sources.NAME.columns.COLUMN": (set(RULE_KEYS), None),
        "sources.NAME.guard": (set(GUARD_KEYS), None),
        "entities.NAME": (set(ENTITY_KEYS), None),
        "feature_views.NAME": (set(VIEW_KEYS), None),
        "feature_views.NAME.windows": (set(WINDOW_KEYS), None),
        "training.NAME": (set(SPEC_KEYS), {k: v for k, v in DEFAULTS.items() if k != "tags"}),
        "training.NAME.hyperparameters": (set(HYPERPARAMETERS), dict(HYPERPARAMETERS)),
        "training.NAME.split": (set(SPLIT_DEFAULTS), dict(SPLIT_DEFAULTS)),
        "training.NAME.sweep": (set(SWEEP_DEFAULTS), dict(SWEEP_DEFAULTS)),
        "registry.models.NAME.gate": (set(GATE_KEYS), None),
        "serving": (set(SERVING_KEYS), None),
        "deployments.NAME": (set(DEPLOYMENT_KEYS), None),
        "monitoring": (set(MONITORING), dict(MONITORING)),
        "monitors.NAME": (set(COMMON), dict(COMMON)),
        "pipelines.NAME": (set(PIPELINE_KEYS), None),
        "pipelines.NAME.steps": (set(STEP_KEYS), None),
        "pipelines.NAME.schedule": (set(SCHEDULE_KEYS), None),
        "pipelines.NAME.triggers": (set(TRIGGER_KEYS), None),
        "schedules.NAME": (set(JOB_SCHEDULE_KEYS), None),
        "alert_sinks.NAME": (set(SINK_KEYS), {k: v for k, v in SINK_KEYS.items() if k != "kind"}),
        "backup": (set(BACKUP), dict(BACKUP)),
        "retention": (set(RETENTION), dict(RETENTION)),
    }
    for kind in [*kinds_model.KINDS, *kinds_system.kinds(None)]:
        out[f"monitors.NAME kind = {kind.name}"] = (set(kind.options), dict(kind.options))
    return out
