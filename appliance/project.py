"""Taking in the project: read ``appliance.toml``, let every plugin check its part, then switch to it.

All-or-nothing: if any plugin refuses the new configuration, the running one stays.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from . import config as config_mod
from .errors import ApplianceError, ConfigError

if TYPE_CHECKING:
    from .app import Appliance


def configure(app: Appliance, cfg: config_mod.Config) -> None:
    """Run every plugin's ``configure`` with ``cfg``; a refusal is raised as a ``ConfigError``."""
    for impl in app.host.impls("configure"):
        try:
            impl.function(**{k: v for k, v in {"app": app, "config": cfg}.items() if k in impl.argnames})
        except ApplianceError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(exc.message, title=exc.title) from exc
        except Exception as exc:
            app.host.record_failure(impl.plugin_name, "configure", f"{type(exc).__name__}: {exc}",
                                    traceback.format_exc())
            raise ConfigError(f"plugin {impl.plugin_name!r} failed while reading the configuration: "
                              f"{type(exc).__name__}: {exc}") from exc


def apply(app: Appliance, path: Path | None = None) -> dict:
    """Re-read the project file (or ``path``) and apply it; returns what changed at the top level."""
    target = path or app.config.path
    if target is None:
        raise ConfigError("the daemon was started without a project; start it with `appliance up --project DIR`")
    cfg = config_mod.load(target)
    configure(app, cfg)
    old = app.config
    app.config = cfg
    changed = sorted(k for k in set(old.data) | set(cfg.data) if old.data.get(k) != cfg.data.get(k))
    note = "restart the daemon to apply [daemon] changes" if "daemon" in changed else ""
    app.events.emit("project.applied", subject="project", data={"path": str(cfg.path), "changed": changed})
    return {"path": str(cfg.path), "changed": changed, "note": note}
