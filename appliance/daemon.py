"""The daemon: one process per home that owns every store, loads plugins, runs jobs and serves the API.

Start order: lock the home, read the project, load plugins, open and migrate the stores, recover jobs a dead
daemon left running, call ``startup``, then bind and announce ``daemon.json``. Stop order (SIGTERM, SIGINT or
``appliance down``): refuse new work, drain jobs, call ``shutdown``, close the stores, release the lock, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

import uvicorn

from . import __version__, memory, project
from . import config as config_mod
from .api import accepts, core_routes, server
from .api.security import is_loopback_name
from .app import Appliance
from .artifacts import ArtifactStore
from .catalog import Catalog
from .catalog import core as core_migrations
from .errors import ApplianceError, ConfigError
from .events import EventBus
from .health import Health, disk_full, disk_is_full, disk_watch, explain_os_error
from .home import Home
from .host import PluginHost
from .integrity import IntegrityWatch
from .jobs import JobRunner
from .net import listen
from .store import Store

log = logging.getLogger("appliance.daemon")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT and its shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _setup_logging(home: Home, level: str) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    fh = RotatingFileHandler(home.logs_dir / "daemon.log", maxBytes=10_000_000, backupCount=5)
    fh.setFormatter(fmt)
    root.addHandler(fh)
    logging.getLogger("uvicorn.error").setLevel("WARNING")


def check_bind(host: str, allow_remote: bool) -> None:
    if not is_loopback_name(host.lower()) and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {host!r}: the control API can change everything on this box. Bind a "
            "loopback address, or pass --allow-remote if you really mean to expose it (it stays behind the token)")


#: The most descriptors the daemon asks for: room for the serving port's connections, the stores and job pipes.
DESCRIPTORS_WANTED = 65536


def raise_descriptor_limit() -> None:
    """Take the soft descriptor limit up to the hard one (at most ``DESCRIPTORS_WANTED``), as Go's runtime and
    nginx do: the usual soft limit of 1024 would leave the serving port only a few hundred connections, while
    the hard limit the administrator set (LimitNOFILE=, ulimit -Hn) is what they meant the daemon to have."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = DESCRIPTORS_WANTED if hard == resource.RLIM_INFINITY else min(hard, DESCRIPTORS_WANTED)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, OSError, ValueError) as exc:  # not Linux/Unix, or refused: keep what we were given
        log.debug("descriptor limit left as it was: %s", exc)


def run(home_dir: Path, *, project: Path | None = None, host: str | None = None, port: int | None = None,
        allow_remote: bool = False) -> int:
    home = Home(home_dir)
    cfg = config_mod.load(project)
    host = host or cfg.daemon.get("host", "127.0.0.1")
    port = cfg.daemon.get("port", config_mod.DEFAULT_PORT) if port is None else port
    check_bind(host, allow_remote)
    # Everything the daemon (and each job's child process) creates is its user's alone: the catalog, the store,
    # logs, artifacts, backups. PostgreSQL does the same for its data directory.
    os.umask(0o077)
    raise_descriptor_limit()
    try:
        home.ensure()
        note = home.acquire_lock()
        _setup_logging(home, cfg.daemon.get("log_level", "info"))
        if note:
            log.warning("%s", note)
        if home.daemon_file.exists():
            try:
                home.read_daemon_info()
            except ApplianceError as exc:
                log.warning("replacing daemon.json: %s", exc.message)
        return Daemon(home, cfg, host, port).run()
    except Exception as exc:
        problem = _start_problem(exc, home)
        if problem is None:
            raise
        raise problem from None
    finally:
        with contextlib.suppress(OSError):
            home.clear_daemon_info()
        home.release_lock()


def _start_problem(exc: Exception, home: Home) -> ApplianceError | None:
    """What stopped the daemon from starting, said so a person can fix it: a full disk above all (SQLite,
    DuckDB and the log each fail in their own words there), a file it may not write, no descriptors left."""
    if isinstance(exc, ApplianceError):
        return exc
    if isinstance(exc, OSError) and (known := explain_os_error(exc, home.root, "the daemon cannot start")):
        return known
    if disk_is_full(home.root):
        return disk_full(home.root, f"the daemon cannot start ({type(exc).__name__}: {exc})")
    return None


class Daemon:
    def __init__(self, home: Home, cfg: config_mod.Config, host: str, port: int):
        self.home, self.cfg, self.host_addr, self.port = home, cfg, host, port
        self.stopping = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: _Server | None = None
        self.integrity: IntegrityWatch | None = None

    def load_plugins(self) -> PluginHost:
        """Every plugin the project allows: built-ins, installed packages, the home's and project's drop-ins."""
        plug_cfg = self.cfg.plugins
        host = PluginHost(allow=plug_cfg.get("allow", []), deny=plug_cfg.get("deny", []))
        dropins = [self.home.plugins_dir]
        if self.cfg.project_dir:
            dropins.append(self.cfg.project_dir / "plugins")
        host.load_all(dropin_dirs=dropins)
        return host

    def open_store(self, health: Health) -> Store:
        return Store(self.home.store_path, health)

    def build(self) -> Appliance:
        t0 = time.perf_counter()
        host = self.load_plugins()
        health = Health(self.home)
        health.watch(disk_watch(self.home.root))
        catalog = Catalog(self.home.catalog_path, health)
        if damage := catalog.check():
            log.error("%s", damage)
        catalog.migrate(core_migrations)
        host.migrate(catalog)  # a third-party set that fails is rolled back and its plugin disabled
        store = self.open_store(health)
        artifacts = ArtifactStore(self.home.artifacts_dir)
        events = EventBus(catalog, host)
        app = Appliance(home=self.home, config=self.cfg, host=host, catalog=catalog, store=store,
                        artifacts=artifacts, events=events, health=health, stopping=self.stopping,
                        request_stop=self.request_stop)
        host.on_failure = lambda f: events.emit("plugin.failed", subject=f"plugin:{f.plugin}",
                                                data={"plugin": f.plugin, "hook": f.hook, "message": f.message})
        d = self.cfg.daemon
        app.jobs = JobRunner(app, workers=d.get("workers", 4), gpu_slots=d.get("gpu_slots", 1))
        events.start_sinks(app)
        for failure in list(host.failures):
            events.emit("plugin.failed", subject=f"plugin:{failure.plugin}",
                        data={"plugin": failure.plugin, "hook": failure.hook, "message": failure.message})
        project.configure(app, self.cfg)
        app.jobs.recover()
        host.start(app)  # a third-party plugin whose startup raises is disabled
        log.info("built in %.0f ms", (time.perf_counter() - t0) * 1000)
        return app

    def routes(self, app: Appliance) -> list:
        pairs = [(r, "appliance") for r in core_routes.ROUTES]
        taken = {r.name for r, _ in pairs}
        reg = app.registry("routes")
        for name, route in reg.items():
            if name in taken:
                app.host.record_failure(reg.owner(name) or "?", "register_routes",
                                        f"route {name} is a core route; the plugin's is ignored")
                continue
            pairs.append((route, reg.owner(name)))
        return pairs

    def request_stop(self) -> None:
        if self.loop is None or self.stopping.is_set():
            return
        self.loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self.stopping.is_set():
            return
        log.info("stopping: no new work; draining jobs")
        self.stopping.set()
        if self.server:
            self.server.should_exit = True

    def run(self) -> int:
        app = self.build()
        token = self.home.token(create=True)
        sock = accepts.guarded(listen(self.host_addr, self.port, hint="choose another --port"))
        actual_port = sock.getsockname()[1]
        app.ports["control"] = actual_port
        asgi = server.build(app, lambda: self.routes(app), token=token,
                            allowed_hosts=self.cfg.daemon.get("allowed_hosts", []))
        config = uvicorn.Config(asgi, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, loop="asyncio", http="auto")
        self.server = _Server(config)
        app.jobs.start()
        self.integrity = IntegrityWatch(app)
        url_host = f"[{self.host_addr}]" if ":" in self.host_addr else self.host_addr
        info = {"pid": os.getpid(), "version": __version__, "host": self.host_addr, "port": actual_port,
                "url": f"http://{url_host}:{actual_port}", "ports": app.ports, "started": app.started,
                "project": str(self.cfg.project_dir) if self.cfg.project_dir else None}

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.loop.set_exception_handler(accepts.AcceptLog(f"control port {info['url']}"))
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self._begin_stop)
            serve = asyncio.create_task(self.server.serve(sockets=[sock]))
            while not self.server.started and not serve.done():
                await asyncio.sleep(0.01)
            if self.server.started:
                self.home.write_daemon_info(info)
                app.events.emit("daemon.started", subject="daemon", data={"pid": os.getpid(), "port": actual_port})
                log.info("appliance %s ready on %s (home %s)", __version__, info["url"], self.home.root)
                memory.settle()
                self.integrity.start()
            stopper = asyncio.create_task(self._watch_stop(app))
            await serve
            stopper.cancel()

        try:
            asyncio.run(main())
        finally:
            self.stop(app)
        return 0

    def stop(self, app: Appliance) -> None:
        """Every step of the stop, in order; one that fails (a full disk refuses the last event) is logged and
        the next still runs, so the stores are always closed."""
        self.stopping.set()
        drain = float(self.cfg.daemon.get("drain_seconds", 10))
        steps = [("remove daemon.json", self.home.clear_daemon_info),
                 ("drain the jobs", lambda: app.jobs.stop(drain)),
                 ("call the plugins' shutdown", lambda: app.host.call("shutdown", app=app)),
                 ("record daemon.stopped", lambda: app.events.emit("daemon.stopped", subject="daemon",
                                                                   data={"pid": os.getpid()})),
                 ("end the event streams", app.events.close),
                 ("stop the integrity check", self.integrity.stop if self.integrity else lambda: None),
                 ("close store.duckdb", app.store.close),
                 ("close catalog.db", app.catalog.close)]
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                why = exc.message if isinstance(exc, ApplianceError) else f"{type(exc).__name__}: {exc}"
                log.error("stopping: could not %s: %s", what, why)
        log.info("stopped")

    async def _watch_stop(self, app: Appliance) -> None:
        """When stopping, end the event streams so open SSE connections do not hold the server up."""
        while not self.stopping.is_set():
            await asyncio.sleep(0.05)
        app.events.end_streams()
