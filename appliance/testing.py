"""Test helpers for the appliance and for plugin authors: a real daemon, in a subprocess or in this process.

``DaemonProcess`` is ``appliance up`` in a subprocess on a free loopback port: the daemon exactly as users run
it, with its CLI. ``InProcessApp`` builds the same daemon (the same plugin loading, migrations, ``configure``,
``startup`` and control API, token and Host checks included) inside the test's process without a socket, in
milliseconds rather than seconds, for tests that need no isolation. Both answer ``get``, ``post``, ``delete``,
``submit``, ``wait_job`` and ``events`` the same way.

    from appliance.testing import DaemonProcess, InProcessApp

    def test_my_plugin(tmp_path):
        with DaemonProcess(tmp_path / "home", project=my_project_dir) as d:
            assert d.get("/plugins").status_code == 200

    def test_my_route(tmp_path):
        with InProcessApp(tmp_path / "home", toml="[my_plugin]\n", plugins=[my_plugin]) as a:
            assert a.get("/my-plugin/hello").json() == {"hello": "world"}
"""

from __future__ import annotations

import asyncio
import json
import json as _json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx


class ControlApi:
    """Control API helpers over ``self.http`` (an ``httpx.Client`` carrying the token); paths are under ``/api/v1``."""

    http: Any = None

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get("/api/v1" + path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=json if json is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete("/api/v1" + path, **kw)

    def register_model(self, name: str, path: Path, *, sample: Path | None = None, description: str = "",
                       nullable: tuple[str, ...] = ()) -> dict:
        """Register the ONNX file at ``path`` as the next version of model ``name``, as ``appliance models
        register`` does (``POST /models/NAME/versions``); returns the version record, or raises with the
        daemon's answer."""
        from .cli.client import multipart

        files = {"model": (Path(path).name, Path(path).read_bytes())}
        if sample is not None:
            files["sample"] = (Path(sample).name, Path(sample).read_bytes())
        fields = {k: v for k, v in (("description", description), ("nullable", ",".join(nullable))) if v}
        body, ctype = multipart(fields, files)
        r = self.http.post(f"/api/v1/models/{name}/versions", content=body, headers={"content-type": ctype},
                           timeout=120)
        if r.status_code != 201:
            raise RuntimeError(f"registering {path} as {name} failed: HTTP {r.status_code} {r.text}")
        return r.json()

    def submit(self, kind: str, params: dict | None = None, **extra: Any) -> dict:
        r = self.post("/jobs", {"kind": kind, "params": params or {}, **extra})
        assert r.status_code == 202, r.text
        return r.json()

    def wait_job(self, job_id: int, states=("succeeded", "failed", "cancelled"), timeout: float = 60.0) -> dict:
        """The job once it is in one of ``states`` (or at ``timeout``). Waits on the daemon's long poll for the
        job's end, so a bench that times a job neither loads the daemon with polls nor hears of the end late."""
        deadline = time.monotonic() + timeout
        ended = ("succeeded", "failed", "cancelled")
        final = set(states) <= set(ended)
        while True:
            left = deadline - time.monotonic()
            wait = max(1, min(20, int(left))) if final and left > 1 else 0
            job = self.get(f"/jobs/{job_id}", params={"wait": wait} if wait else None, timeout=wait + 30).json()
            if job["state"] in states or (final and job["state"] in ended) or time.monotonic() > deadline:
                return job
            if not wait:
                time.sleep(0.05)

    def events(self, type: str | None = None, after: int = 0, limit: int = 10_000) -> list[dict]:
        params = {"after": after, "limit": limit}
        if type:
            params["type"] = type
        return self.get("/events", params=params).json()


class DaemonProcess(ControlApi):
    """``appliance up`` in a subprocess with its own home; HTTP helpers carry the token."""

    def __init__(self, home: Path, project: Path | None = None, *, env: dict | None = None,
                 args: tuple[str, ...] = (), cwd: Path | None = None):
        self.home = Path(home)
        #: The daemon's working directory (the test's, unless given).
        self.cwd = Path(cwd) if cwd else None
        self.project = Path(project) if project else None
        # Serving gets a free port too unless a test asks otherwise, so daemons side by side never collide.
        self.env = {**os.environ, "APPLIANCE_SERVING_PORT": "0", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.http: httpx.Client | None = None
        self.stderr_path = self.home.parent / f"{self.home.name}-daemon-stderr.log"

    # ------------------------------------------------------------------------------------------- process

    def command(self) -> list[str]:
        # -P: the working directory is not put on sys.path, so an appliance/ (or plugins/, tui.py) beside the
        # tests cannot stand in for the installed one, as it cannot for the `appliance` script.
        cmd = [sys.executable, "-P", "-m", "appliance", "--home", str(self.home), "up", "--port", "0"]
        if self.project:
            cmd += ["--project", str(self.project)]
        return cmd + list(self.args)

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.stderr_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(self.command(), env=self.env, stdout=err, stderr=err,
                                     stdin=subprocess.DEVNULL, cwd=self.cwd)
        err.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        info_path = self.home / "daemon.json"
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                info = json.loads(info_path.read_text())
                if self.proc is None or info.get("pid") == self.proc.pid:
                    self._connect(info)
                    if self.http.get("/api/v1/health").status_code == 200:
                        return
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not ready after {timeout} s:\n{self.stderr()}")

    def _connect(self, info: dict) -> None:
        if self.http is not None:
            self.http.close()
        self.info = info
        self.url = info["url"]
        self.token = (self.home / "token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=30.0)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.http:
                self.http.close()
                self.http = None

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up."""
        assert self.proc
        self.proc.kill()
        self.proc.wait(10)
        if self.http:
            self.http.close()
            self.http = None

    def restart(self, timeout: float = 30.0) -> DaemonProcess:
        if self.proc and self.proc.poll() is None:
            self.stop()
        return self.start(timeout)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.stop(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``appliance --home HOME ARGS`` as a user would."""
        return subprocess.run([sys.executable, "-P", "-m", "appliance", "--home", str(self.home), *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.cwd)


class InProcessApp(ControlApi):
    """The daemon built in this process: ``Daemon.build`` and its control API, without a subprocess or socket.

    ``plugins`` are registered as given (modules or objects with hook implementations; a ``(name, plugin)``
    pair names one), next to the drop-ins of ``project``'s ``plugins/`` and, with ``entry_points=True``, the
    installed packages. ``builtins`` names the built-in plugins to load (none by default: a unit test of one
    plugin rarely needs them, and each costs start-up time). ``project`` is a project directory; or give the
    text of its ``appliance.toml`` as ``toml`` and a project is made beside the home. The store (DuckDB) opens
    on first use. Requests go through the real ASGI app, token
    and Host checks included; jobs run on the real runner's threads. Not isolated: plugin modules are shared
    with the test process, and a plugin that blocks or crashes takes the test with it.
    """

    def __init__(self, home: Path, project: Path | None = None, *, toml: str | None = None,
                 plugins: Iterable[Any] = (), builtins: Iterable[str] = (), entry_points: bool = False):
        self.home = Path(home)
        self.project = Path(project) if project else None
        self.toml = toml
        self.plugins = list(plugins)
        self.builtins = tuple(b if "." in b else f"plugins.{b}" for b in builtins)
        self.entry_points = entry_points
        self.app: Any = None

    def start(self) -> InProcessApp:
        from . import config as config_mod
        from .api import server
        from .daemon import Daemon
        from .home import Home

        home = Home(self.home)
        home.ensure()
        _copy_blank_catalog(home.catalog_path)
        project = self.project
        if self.toml is not None:
            project = project or self.home.parent / f"{self.home.name}-project"
            project.mkdir(parents=True, exist_ok=True)
            (project / "appliance.toml").write_text(self.toml)
        harness = self

        class _Daemon(Daemon):
            def load_plugins(self):
                from .host import PluginHost

                plug = self.cfg.plugins
                host = PluginHost(allow=plug.get("allow", []), deny=plug.get("deny", []))
                dirs = [self.cfg.project_dir / "plugins"] if self.cfg.project_dir else []
                host.load_all(builtins=harness.builtins, entry_points=harness.entry_points, dropin_dirs=dirs)
                for item in harness.plugins:
                    name, obj = item if isinstance(item, tuple) else (_plugin_name(item), item)
                    host.register(obj, name=name, source="object")
                return host

            def open_store(self, health):
                return _LazyStore(self.home.store_path, health)

        self._daemon = _Daemon(home, config_mod.load(project), "127.0.0.1", 0)
        self.app = self._daemon.build()
        token = home.token(create=True)
        asgi = server.build(self.app, lambda: self._daemon.routes(self.app), token=token, allowed_hosts=[])
        self.app.jobs.start()
        self.http = _LoopClient(asgi, {"Authorization": f"Bearer {token}"})
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """What the daemon does on SIGTERM: drain the jobs, call ``shutdown``, close the stores."""
        app, self.app = self.app, None
        if app is None:
            return
        self._daemon.stopping.set()
        app.jobs.stop(drain_s)
        app.host.call("shutdown", app=app)
        app.events.close()
        app.store.close()
        app.catalog.close()
        if self.http is not None:
            self.http.close()
            self.http = None

    def __enter__(self) -> InProcessApp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _LoopClient:
    """A blocking client for an ASGI app served on an event loop in a thread of its own, as uvicorn would serve
    it (so long polls and coroutine routes run on a loop, plain routes in its worker threads). It speaks ASGI to
    the app directly, without an HTTP client's machinery (a tenth of a millisecond a request instead of one), and
    answers with ``httpx.Response`` objects, as the real daemon's client does. The event stream (server-sent
    events) never ends, so it is refused here: test it against a ``DaemonProcess``."""

    def __init__(self, asgi: Any, headers: dict[str, str]):
        self.asgi = asgi
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="inprocess-api", daemon=True)
        self._thread.start()

    def request(self, method: str, url: str, *, params: Any = None, json: Any = None, content: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: Any = None) -> httpx.Response:
        """``timeout`` is accepted and ignored: nothing is on a wire to time out."""
        body = content if content is not None else (_json.dumps(json).encode() if json is not None else b"")
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        names = {k for k, _ in extra}
        head = [(b"host", b"127.0.0.1"), *(h for h in self.headers if h[0] not in names), *extra]
        if body:
            head += [(b"content-type", b"application/json")] if json is not None else []
            head.append((b"content-length", str(len(body)).encode()))
        path, _, query = url.partition("?")
        if params:
            query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
        future = asyncio.run_coroutine_threadsafe(self._call(method.upper(), path, query, head, body), self.loop)
        status, reply_headers, reply = future.result()
        return httpx.Response(status, headers=reply_headers, content=reply,
                              request=httpx.Request(method, f"http://127.0.0.1{url}"))

    async def _call(self, method: str, path: str, query: str, headers: list, body: bytes) -> tuple:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
        done, sent = asyncio.Event(), [False]
        status, reply_headers, chunks, streamed = 500, [], [], [False]

        async def receive() -> dict:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status, reply_headers
            if message["type"] == "http.response.start":
                status, reply_headers = message["status"], [(k.decode("latin-1"), v.decode("latin-1"))
                                                            for k, v in message.get("headers", [])]
                if any(k == "content-type" and v.startswith("text/event-stream") for k, v in reply_headers):
                    streamed[0] = True
                    done.set()  # hang up: the stream would never end
            elif message["type"] == "http.response.body" and not streamed[0]:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.asgi(scope, receive, send)
        if streamed[0]:
            raise RuntimeError(f"{path} answers with an event stream, which an InProcessApp cannot follow; "
                               "test it against a DaemonProcess (the appliance_daemon fixture)")
        return status, reply_headers, b"".join(chunks)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _plugin_name(obj: Any) -> str:
    name = getattr(obj, "__name__", None) or type(obj).__name__
    return name.rsplit(".", 1)[-1]


class _LazyStore:
    """The store, opened when a test first uses it: most plugin unit tests never do, and DuckDB takes ~40 ms
    to open a database."""

    def __init__(self, path: Path, health: Any = None):
        self.path, self.health = Path(path), health
        self._store: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                from .store import Store

                self._store = Store(self.path, self.health)
            return self._store

    def release(self) -> None:
        if self._store is not None:  # the runner releases each job thread's cursor: no reason to open it
            self._store.release()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._open(), name)


_blank_catalogs: dict[str, Path] = {}


def _copy_blank_catalog(path: Path) -> None:
    """Start a fresh home from a copy of a catalog the core migrations already ran on (they take ~20 ms each
    time); the plugins' own migrations then run as at any start."""
    if path.exists():
        return
    from .catalog import Catalog
    from .catalog import core as core_migrations

    key = ",".join(n for n, _ in core_migrations.steps)
    blank = _blank_catalogs.get(key)
    if blank is None or not blank.exists():
        blank = Path(tempfile.mkdtemp(prefix="appliance-blank-")) / "catalog.db"
        catalog = Catalog(blank)
        catalog.migrate(core_migrations)
        catalog.close()
        _blank_catalogs[key] = blank
    shutil.copyfile(blank, path)
    os.chmod(path, 0o600)
