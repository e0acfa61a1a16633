"""Taking in the project: read ``appliance.toml``, let every plugin check its part, then switch to it.

All-or-nothing: if any plugin refuses the new configuration, every plugin goes back to the running one. One
apply at a time: a second waits its turn (up to ``APPLY_WAIT_S``), so two at once never mix their files.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import config as config_mod
from .errors import ApplianceError, ConfigError, Conflict

if TYPE_CHECKING:
    from .app import Appliance

log = logging.getLogger("appliance.project")

#: How long an apply waits for one already running; under the CLI's 30 s request timeout, so the loser hears why.
APPLY_WAIT_S = 20.0

_applying = threading.Lock()
_began = 0.0  # when the running apply began, for the message of one that gave up waiting


def configure(app: Appliance, cfg: config_mod.Config, plugins: Iterable[str] | None = None) -> None:
    """Run every plugin's ``configure`` (or that of ``plugins``) with ``cfg``; a refusal (an ``ApplianceError``)
    is raised as a ``ConfigError``. Any other exception is a bug in the plugin, not a verdict on the file: a
    third-party plugin is disabled for it and the others carry on; a built-in's is a refusal, as it is ours."""
    for impl in app.host.impls("configure"):
        if plugins is not None and impl.plugin_name not in plugins:
            continue
        try:
            impl.function(**{k: v for k, v in {"app": app, "config": cfg}.items() if k in impl.argnames})
        except ApplianceError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(exc.message, title=exc.title) from exc
        except Exception as exc:
            message, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
            if not app.host.is_builtin(impl.plugin_name):
                app.host.disable(impl.plugin_name, "configure", message, tb)
                continue
            app.host.record_failure(impl.plugin_name, "configure", message, tb)
            raise ConfigError(f"plugin {impl.plugin_name!r} failed while reading the configuration: "
                              f"{message}") from exc


def apply(app: Appliance, path: Path | None = None) -> dict:
    """Re-read the project file (or ``path``) and apply it; returns what changed at the top level."""
    global _began
    if not _applying.acquire(timeout=APPLY_WAIT_S):
        raise Conflict(f"another apply has been running for {time.monotonic() - _began:.0f} s; try again when "
                       "it has finished", title="Apply in progress")
    try:
        _began = time.monotonic()
        return _apply(app, path)
    finally:
        _applying.release()


def _apply(app: Appliance, path: Path | None) -> dict:
    target = path or app.config.path
    if target is None:
        raise ConfigError("the daemon was started without a project; start it with `appliance up --project DIR`")
    cfg = config_mod.load(target)
    old = app.config
    if cfg.plugins != old.plugins:
        raise ConfigError(f"{cfg.path}: [plugins] changed; which plugins load is settled when the daemon starts, so "
                          "nothing was applied: restart it (appliance down && appliance up) to use this file",
                          title="Restart needed")
    try:
        configure(app, cfg)
    except ConfigError:
        # Plugins asked before the one that refused have switched already: put them back on the running file.
        try:
            configure(app, old)
        except ApplianceError:
            log.exception("restoring the running configuration after a refused apply failed")
        raise
    app.config = cfg
    changed = sorted(k for k in set(old.data) | set(cfg.data) if old.data.get(k) != cfg.data.get(k))
    note = "restart the daemon to apply [daemon] changes" if "daemon" in changed else ""
    app.events.emit("project.applied", subject="project", data={"path": str(cfg.path), "changed": changed})
    return {"path": str(cfg.path), "changed": changed, "note": note}


def preview(app: Appliance, path: Path | None = None) -> dict:
    """What ``apply`` would change, key by key, without changing anything: the file is read and checked as
    ``apply`` reads it (syntax, the core's tables); plugins check their own tables when it is applied."""
    target = path or app.config.path
    if target is None:
        raise ConfigError("the daemon was started without a project; start it with `appliance up --project DIR`")
    cfg = config_mod.load(target)
    changes: list[dict] = []
    _diff(app.config.data, cfg.data, [], changes)
    changed = sorted(k for k in set(app.config.data) | set(cfg.data) if app.config.data.get(k) != cfg.data.get(k))
    return {"path": str(cfg.path), "changed": changed, "changes": changes, "dry_run": True,
            "note": "restart the daemon to apply [daemon] changes" if "daemon" in changed else ""}


def _diff(old, new, where: list[str], out: list[dict]) -> None:
    """Each key added, removed or changed between two tables, by dotted path (tables are walked into)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key not in new:
                out.append({"key": ".".join([*where, key]), "change": "removed", "from": old[key]})
            elif key not in old:
                out.append({"key": ".".join([*where, key]), "change": "added", "to": new[key]})
            elif old[key] != new[key]:
                _diff(old[key], new[key], [*where, key], out)
        return
    out.append({"key": ".".join(where), "change": "changed", "from": old, "to": new})
