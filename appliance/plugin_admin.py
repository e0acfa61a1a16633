"""Plugins coming into a running daemon: ``appliance plugin install SPEC`` and ``appliance plugin reload NAME``.

A plugin loaded after start goes through what every plugin went through at start, in the same order and with
the same isolation: its migrations, ``configure`` with the running project, its event sink, ``startup``, and its
routes mounted. Anything it fails is recorded and disables it, as at start. What Python cannot redo in place
(an installed package already imported, a built-in) is refused with a message that says to restart.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import project
from .errors import ApplianceError, BadRequest, ConfigError, NotFound

if TYPE_CHECKING:
    from .app import Appliance

log = logging.getLogger("appliance.plugins")

#: How long pip may take (it may build a wheel or download one).
PIP_TIMEOUT_S = 600
RESTART = "restart the daemon (appliance down && appliance up)"


def bring_up(app: Appliance, names: list[str]) -> None:
    """Take freshly registered plugins through start-up in a running daemon; failures disable them."""
    host = app.host

    def live() -> list[str]:
        return [n for n in names if n in host.plugins and host.plugins[n].status == "loaded"]

    host.migrate(app.catalog, live())
    for name in live():
        try:
            project.configure(app, app.config, [name])
        except ConfigError as exc:  # it refuses the running project: it cannot run with it
            host.disable(name, "configure", f"refused the running project: {exc.message}")
    app.events.start_sinks(app, live())
    host.start(app, live())
    host.changed()


def install(app: Appliance, spec: str) -> dict:
    """``pip install SPEC`` into the daemon's own environment, then load the plugins it brought."""
    if not isinstance(spec, str) or not spec.strip() or "\0" in spec or len(spec) > 1000:
        raise BadRequest("field 'spec' must be what `pip install` takes: a package name, a requirement or a path")
    if spec.lstrip().startswith("-"):
        raise BadRequest(f"{spec!r} is not a pip option here: give a package name, a requirement or a path")
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", spec.strip()]
    log.info("installing plugin package %s", spec)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ApplianceError(f"pip did not finish installing {spec!r} within {PIP_TIMEOUT_S} s",
                             title="Install failed") from None
    if done.returncode != 0:
        said = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ApplianceError(f"pip could not install {spec!r}:\n{said}", title="Install failed")
    importlib.invalidate_caches()
    before = dict(app.host.plugins)
    tried = app.host.load_entry_points()
    bring_up(app, tried)
    already = [n for n, r in before.items() if r.source == "entrypoint" and r.status == "loaded"]
    return {"spec": spec, "plugins": [app.host.plugins[n].to_dict() for n in tried],
            "note": (f"no new plugin was loaded; if {spec!r} upgraded one already running "
                     f"({', '.join(already) or 'none is'}), {RESTART} to run the new version") if not tried else ""}


def reload(app: Appliance, name: str) -> dict:
    """Read a drop-in plugin again from its file: its ``shutdown``, out, in afresh, and through start-up."""
    host = app.host
    record = host.plugins.get(name)
    if record is None:
        raise NotFound(f"no plugin {name!r}; `appliance plugins` lists them")
    if record.source != "dropin" or not record.path:
        what = {"builtin": "a built-in", "entrypoint": "an installed package"}.get(record.source, record.source)
        raise BadRequest(f"plugin {name!r} is {what}; only drop-ins reload in place: {RESTART} to reload it",
                         title="Restart needed")
    path = Path(record.path)
    if record.status == "loaded":
        for impl in host.impls("shutdown"):
            if impl.plugin_name == name:
                host.call_impl(impl, "shutdown", {"app": app})
        host.unload(name)
    for modname in [m for m in sys.modules if m == f"appliance_dropin_{name}"
                    or m.startswith(f"appliance_dropin_{name}.")]:
        del sys.modules[modname]
    del host.plugins[name]
    if not path.exists():
        raise NotFound(f"the drop-in {path} is gone; plugin {name!r} is unloaded")
    if host.load_dropin(path):
        bring_up(app, [name])
    else:
        host.changed()
    return host.plugins[name].to_dict()
