"""The plugin host: finds, loads, checks and calls plugins, and owns the registries they fill.

Built-ins, installed packages (the ``appliance`` entry-point group) and drop-in files are all loaded by the same
``load`` call. A plugin that fails to import, breaks the contract, or raises in a hook is recorded (plugin, hook,
traceback, time) and skipped; the daemon keeps running. A plugin the user named in ``[plugins] allow`` that
fails to load is a configuration error instead, because the user asked for it by name. Once loaded, a
third-party plugin whose migration, ``configure`` or ``startup`` fails is disabled (``disable``): unregistered,
its registrations withdrawn, shown as ``failed`` with the traceback; the daemon and the other plugins carry on.

``[plugins] allow``, when set, is the list of third-party plugins that may load at all: any other entry point
or drop-in is left unimported. Built-ins load unless ``[plugins] deny`` names them.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .contract import CONTRACT_VERSION, contract_compatible
from .errors import ConfigError, PluginError
from .registries import Failure, PluginRecord, Registry

log = logging.getLogger("appliance.plugins")
trace_log = logging.getLogger("appliance.plugins.trace")

#: Built-in plugins, registered by the same call as third-party ones.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.event_log",
    "plugins.features",
    "plugins.ingest",
    "plugins.training",
    "plugins.registry",
    "plugins.mlflow",
    "plugins.serving",
    "plugins.pipelines",
    "plugins.monitoring",
    "plugins.backup",
    "plugins.retention",
    "plugins.demo",
)

BUILTIN_DIR = Path(importlib.util.find_spec("plugins").submodule_search_locations[0]).resolve()  # type: ignore[index]

HOOK_NAMES = frozenset(n for n in dir(hookspecs) if not n.startswith("_") and hasattr(getattr(hookspecs, n), "appliance_spec"))
REGISTRATION_HOOKS = tuple(sorted(n for n in HOOK_NAMES if n.startswith("register_")))


def registry_name(hook: str) -> str:
    return hook.removeprefix("register_")


class PluginHost:
    """Loads plugins and calls their hooks with failures isolated per plugin."""

    def __init__(self, *, allow: Iterable[str] = (), deny: Iterable[str] = (), trace: bool | None = None):
        self.pm = pluggy.PluginManager("appliance")
        self.pm.add_hookspecs(hookspecs)
        self.allow = list(allow)
        self.deny = set(deny)
        self.trace = os.environ.get("APPLIANCE_TRACE_PLUGINS") == "1" if trace is None else trace
        self.plugins: dict[str, PluginRecord] = {}
        self.failures: list[Failure] = []
        self.warnings: list[str] = []
        self.registries: dict[str, Registry] = {registry_name(h): Registry(registry_name(h)) for h in REGISTRATION_HOOKS}
        self._lock = threading.Lock()
        self.on_failure: Callable[[Failure], None] | None = None
        #: Called with a plugin's name when it is disabled or unloaded (the event bus stops its sink, the
        #: control API drops its routes).
        self.on_unload: list[Callable[[str], None]] = []
        #: Called once plugins have come or gone in a running daemon (the control API remounts its routes).
        self.on_change: list[Callable[[], None]] = []

    # ----------------------------------------------------------------------------------------------- discovery

    def load_all(self, *, builtins: Iterable[str] = DEFAULT_PLUGINS, entry_points: bool = True,
                 dropin_dirs: Iterable[Path] = ()) -> None:
        for modname in builtins:
            self.load_module(modname, name=modname.rsplit(".", 1)[-1], source="builtin")
        if entry_points:
            self.load_entry_points()
        for d in dropin_dirs:
            self.load_dropins(Path(d))
        for name in self.allow:
            if name not in self.plugins:
                self.warn(f"[plugins] allow names {name!r}, but no plugin of that name was found")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # per-plugin checks normally catch this first
            self.warn(str(exc))

    def load_entry_points(self) -> list[str]:
        """Load the installed packages' plugins not loaded yet; returns the names of those it tried."""
        tried = []
        for ep in importlib.metadata.entry_points(group="appliance"):
            if ep.name in self.plugins or self._skip(ep.name, "entrypoint"):
                continue
            tried.append(ep.name)
            try:
                obj = ep.load()
            except Exception as exc:
                self._failed_import(ep.name, "entrypoint", exc)
                continue
            version = ep.dist.version if ep.dist else ""
            self.register(obj, name=ep.name, source="entrypoint", version=version)
        return tried

    def load_dropins(self, directory: Path) -> None:
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.resolve() == BUILTIN_DIR or BUILTIN_DIR in path.resolve().parents:
                continue  # the repository's own plugins/ is the built-ins, already loaded
            if dropin_init(path) is None or self._skip(path.stem, "dropin"):
                continue
            self.load_dropin(path)

    def load_dropin(self, path: Path) -> bool:
        """Import the drop-in file or package at ``path`` (again, on a reload) and register it."""
        name, init = path.stem, dropin_init(path)
        modname = f"appliance_dropin_{name}"
        try:
            assert init is not None, f"{path} is neither a .py file nor a package"
            search = [str(path)] if path.is_dir() else None
            spec = importlib.util.spec_from_file_location(modname, init, submodule_search_locations=search)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(modname, None)
            self._failed_import(name, "dropin", exc)
            self.plugins[name].path = str(path)
            return False
        ok = self.register(module, name=name, source="dropin")
        self.plugins[name].path = str(path)
        return ok

    def load_module(self, modname: str, *, name: str, source: str) -> None:
        if self._skip(name, source):
            return
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            self._failed_import(name, source, exc)
            return
        self.register(module, name=name, source=source)

    def _skip(self, name: str, source: str) -> bool:
        """Whether ``[plugins]`` keeps this plugin out; it is then recorded as ``denied`` and never imported."""
        if name in self.deny:
            self.plugins[name] = PluginRecord(name, source, status="denied", error="denied by [plugins] deny")
            return True
        if self.allow and source != "builtin" and name not in self.allow:
            self.plugins[name] = PluginRecord(name, source, status="denied",
                                              error="not named in [plugins] allow, so not loaded")
            return True
        return False

    def _failed_import(self, name: str, source: str, exc: BaseException) -> None:
        tb = traceback.format_exc()
        self.plugins[name] = PluginRecord(name, source, status="failed", error=f"import failed: {exc!r}",
                                          traceback=tb)
        self._record(name, "import", f"import failed: {exc!r}", tb)
        self._named_failed(name, f"failed to import: {exc!r}")

    def _named_failed(self, name: str, why: str) -> None:
        if name in self.allow:
            raise ConfigError(f"plugin {name!r}, named in [plugins] allow, {why}", title="Plugin failed")

    # ----------------------------------------------------------------------------------------------- registration

    def register(self, obj: Any, *, name: str, source: str, version: str = "") -> bool:
        """Check a plugin against the contract and register it; on any problem, record and refuse it."""
        if self.pm.has_plugin(name):
            self._record(name, "register", f"a second plugin named {name!r} was found ({source}); it is skipped", "")
            return False
        record = PluginRecord(name, source, module=getattr(obj, "__name__", type(obj).__name__), version=version)
        self.plugins[name] = record
        wanted = getattr(obj, "APPLIANCE_CONTRACT", None)
        record.contract = str(wanted or "")
        if wanted is None:
            record.status = "refused"
            record.error = (f"plugin {name!r} does not declare the contract it targets; "
                            f"add APPLIANCE_CONTRACT = \"{CONTRACT_VERSION}\" to it")
        elif not contract_compatible(str(wanted)):
            record.status = "refused"
            record.error = (f"plugin {name!r} needs contract {wanted}, but this appliance provides contract "
                            f"{CONTRACT_VERSION} (plugins written for {CONTRACT_VERSION.split('.')[0]}.x load)")
        else:
            unknown = [h for h in self._impl_names(obj) if h not in HOOK_NAMES]
            if unknown:
                hints = []
                for h in unknown:
                    close = difflib.get_close_matches(h, HOOK_NAMES, n=1)
                    hints.append(f"{h!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                record.status = "refused"
                record.error = f"plugin {name!r} implements unknown hook(s): {', '.join(hints)}"
        if record.status != "loaded":
            self._record(name, "register", record.error, "")
            self._named_failed(name, record.error)
            return False
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:
            record.status, record.error = "refused", f"registration failed: {exc}"
            self._record(name, "register", record.error, traceback.format_exc())
            self._named_failed(name, record.error)
            return False
        record.hooks = sorted(self._impl_names(obj))
        self._warn_unmarked(name, obj, record.hooks)
        self._fill_registries(name, record)
        return record.status == "loaded"

    def _warn_unmarked(self, name: str, obj: Any, marked: list[str]) -> None:
        for hook in sorted(HOOK_NAMES - set(marked)):
            if callable(getattr(obj, hook, None)):
                self.warn(f"plugin {name!r} defines {hook}() without @hookimpl, so it is never called; "
                          "mark it with @appliance.hookimpl")

    def _impl_names(self, obj: Any) -> list[str]:
        names = []
        for attr in dir(obj):
            try:
                if self.pm.parse_hookimpl_opts(obj, attr) is not None:
                    names.append(attr)
            except Exception:
                continue
        return names

    def _fill_registries(self, name: str, record: PluginRecord) -> None:
        """Collect everything the plugin registers; a plugin whose registration raises gets none of it."""
        staged: dict[str, list[Any]] = {}
        for hook in REGISTRATION_HOOKS:
            if hook not in record.hooks:
                continue
            items: list[Any] = []
            ok = self._call_one(name, hook, {"register": items.append})
            if not ok:
                self.pm.unregister(name=name)
                record.status = "failed"
                record.error = f"hook {hook} raised; plugin disabled"
                record.traceback = self.failures[-1].traceback if self.failures else ""
                self._named_failed(name, record.error)
                return
            staged[hook] = items
        for hook, items in staged.items():
            reg = self.registries[registry_name(hook)]
            done = record.registrations.setdefault(reg.name, [])
            for obj in items:
                try:
                    reg.add(obj, name)
                    done.append(obj.name)
                except PluginError as exc:
                    self._record(name, hook, exc.message, "")

    # ----------------------------------------------------------------------------------------------- disabling

    def is_builtin(self, name: str) -> bool:
        record = self.plugins.get(name)
        return record is not None and record.source == "builtin"

    def disable(self, name: str, hook: str, message: str, tb: str = "") -> None:
        """Take a loaded plugin out: unregister it, withdraw its registrations (routes, job kinds, kinds...),
        stop its sink, and show it ``failed`` with ``message`` and the traceback. Its ``shutdown`` is not called."""
        self.unload(name)
        record = self.plugins.setdefault(name, PluginRecord(name, "object"))
        record.status, record.error, record.traceback = "failed", f"{hook} failed: {message}; plugin disabled", tb
        record.registrations = {}
        self._record(name, hook, message, tb)

    def unload(self, name: str) -> None:
        """Unregister a plugin and withdraw what it registered (for ``disable`` and reloads)."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        for reg in self.registries.values():
            reg.remove_owner(name)
        for listener in list(self.on_unload):
            try:
                listener(name)
            except Exception:
                log.exception("unloading plugin %s: a listener failed", name)
        self.changed()

    def changed(self) -> None:
        """Tell the listeners that the set of loaded plugins changed."""
        for listener in list(self.on_change):
            try:
                listener()
            except Exception:
                log.exception("a listener for plugin changes failed")

    def migrate(self, catalog: Any, plugins: Iterable[str] | None = None) -> None:
        """Apply every plugin's migration sets (or those of ``plugins``). A built-in's failure stops the daemon (it
        is ours to fix); a third-party set runs in one transaction, and if any step fails none of its steps stay
        and its plugin is disabled."""
        reg = self.registries["migrations"]
        for set_name, migrations in reg.items():
            owner = reg.owner(set_name) or "?"
            if plugins is not None and owner not in plugins:
                continue
            if self.is_builtin(owner):
                try:
                    migrations.apply(catalog.db)
                except Exception as exc:
                    raise PluginError(f"migration set {set_name!r} of plugin {owner!r} failed: {exc}",
                                      title="Migration failed") from exc
                continue
            try:
                migrations.apply(catalog.db, atomic=True)
            except Exception as exc:
                self.disable(owner, "migrations", f"migration set {set_name!r} failed and was rolled back: "
                             f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def start(self, app: Any, plugins: Iterable[str] | None = None) -> None:
        """Call ``startup`` (of every plugin, or of ``plugins``). A third-party plugin whose startup raises is
        disabled; a built-in's is shown ``failed`` with its traceback and keeps what it registered."""
        wanted = None if plugins is None else set(plugins)
        for impl in self.impls("startup"):
            if wanted is not None and impl.plugin_name not in wanted:
                continue
            value = self.call_impl(impl, "startup", {"app": app}, record=False)
            if not isinstance(value, _Failed):
                continue
            name = impl.plugin_name
            if self.is_builtin(name):
                self._record(name, "startup", value.message, value.traceback)
                record = self.plugins[name]
                record.status, record.error, record.traceback = "failed", f"startup failed: {value.message}", \
                    value.traceback
            else:
                self.disable(name, "startup", value.message, value.traceback)

    # ----------------------------------------------------------------------------------------------- calling

    def impls(self, hook: str) -> list[pluggy.HookImpl]:
        """A hook's implementations in call order (pluggy stores them last-called-first)."""
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call each implementation of ``hook`` in turn, isolating failures; returns (plugin, result) pairs."""
        results = []
        for impl in self.impls(hook):
            value = self.call_impl(impl, hook, kwargs)
            if not isinstance(value, _Failed):
                results.append((impl.plugin_name, value))
        return results

    def call_impl(self, impl: pluggy.HookImpl, hook: str, kwargs: dict, *, record: bool = True) -> Any:
        """One implementation's answer, or a ``_Failed`` (recorded against its plugin unless ``record`` is off)."""
        args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
        start = time.perf_counter()
        try:
            return impl.function(**args)
        except Exception as exc:
            failed = _Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc())
            if record:
                self._record(impl.plugin_name, hook, failed.message, failed.traceback)
            return failed
        finally:
            if self.trace:
                trace_log.info("hook %s plugin=%s took %.3f ms", hook, impl.plugin_name,
                               (time.perf_counter() - start) * 1000)

    def _call_one(self, plugin: str, hook: str, kwargs: dict) -> bool:
        for impl in self.impls(hook):
            if impl.plugin_name == plugin:
                return not isinstance(self.call_impl(impl, hook, kwargs), _Failed)
        return True

    # ----------------------------------------------------------------------------------------------- reporting

    def _record(self, plugin: str, hook: str, message: str, tb: str) -> None:
        failure = Failure(plugin, hook, message, tb, time.time())
        with self._lock:
            self.failures.append(failure)
            del self.failures[:-1000]
        log.warning("plugin %s failed in %s: %s", plugin, hook, message)
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception:
                log.exception("recording a plugin failure failed")

    def record_failure(self, plugin: str, hook: str, message: str, tb: str = "") -> None:
        """Record a failure found outside a hook call (a route handler or a job of the plugin's that raised)."""
        self._record(plugin, hook, message, tb)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)

    def report(self) -> dict:
        return {
            "contract": CONTRACT_VERSION,
            "plugins": [p.to_dict() for p in self.plugins.values()],
            "failures": [f.to_dict() for f in self.failures],
            "warnings": list(self.warnings),
        }


@dataclass
class _Failed:
    """What a hook call that raised gives back in place of an answer."""

    message: str
    traceback: str


def dropin_init(path: Path) -> Path | None:
    """The file to import for a drop-in: the ``.py`` file itself, or a package's ``__init__.py``."""
    if path.suffix == ".py" and path.is_file():
        return path
    if path.is_dir() and (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None
