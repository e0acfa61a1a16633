"""The dashboard's only way to the box: the daemon's control API and its event stream, over async httpx.

The client re-reads the home's ``daemon.json`` and ``token`` whenever it reconnects, because a restarted daemon
may listen on another port. Every failure is one of three errors the screens know how to show.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from appliance.errors import ApplianceError
from appliance.home import Home


class ApiError(Exception):
    """The daemon answered with an error; ``title`` and ``message`` are its own words."""

    def __init__(self, message: str, title: str = "Error", status: int = 0):
        super().__init__(message)
        self.title, self.message, self.status = title, message, status


class DaemonLost(ApiError):
    """No daemon answers: none runs on the home, or it went away."""


class NotInstalled(ApiError):
    """The route does not exist: the plugin that provides it is not loaded (or not written yet)."""


class ApiClient:
    """Async control API client for one home (or one URL and token, for tests and benches)."""

    def __init__(self, home: Path | None = None, *, url: str | None = None, token: str | None = None,
                 timeout: float = 10.0):
        self.home = Home(home) if home is not None else None
        self.timeout = timeout
        self.url, self.token = url, token
        self._http: httpx.AsyncClient | None = None

    @property
    def where(self) -> str:
        return str(self.home.root) if self.home else (self.url or "?")

    def _resolve(self) -> None:
        if self.home is None:
            return
        try:
            info = self.home.read_daemon_info()
            self.url, self.token = info["url"], self.home.token()
        except (ApplianceError, KeyError, OSError, ValueError) as exc:
            raise DaemonLost(f"no daemon runs on {self.home.root}", title="No daemon") from exc

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._resolve()
            if not self.url:
                raise DaemonLost("no daemon address", title="No daemon")
            plain = self.url.startswith("http://")
            # No keep-alive: a fresh loopback connection costs well under 1 ms, and a daemon restarted (perhaps
            # on a new port) then never leaves a dead pooled connection behind. A plain-http URL needs no TLS
            # context (~0.1 s).
            self._http = httpx.AsyncClient(base_url=self.url.rstrip("/") + "/api/v1", timeout=self.timeout,
                                           headers={"Authorization": f"Bearer {self.token}"},
                                           limits=httpx.Limits(max_keepalive_connections=0),
                                           verify=not plain)
        return self._http

    async def reconnect(self) -> None:
        """Forget the connection so the next call finds the daemon again (it may have a new port)."""
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                      text: bool = False) -> Any:
        http = self._client()
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            resp = await http.request(method, path, params=query, json=body)
        except httpx.TransportError as exc:
            await self.aclose()
            raise DaemonLost(f"the daemon at {self.url} does not answer ({type(exc).__name__})",
                             title="Daemon lost") from None
        if resp.status_code < 400:
            if text:
                return resp.text
            return resp.json() if resp.content else None
        try:
            err = resp.json().get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        title, message = err.get("title") or f"HTTP {resp.status_code}", err.get("message") or resp.text[:200]
        if resp.status_code == 404 and message.startswith("no route"):
            raise NotInstalled(message, title="Not installed", status=404)
        raise ApiError(message, title=title, status=resp.status_code)

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def get_text(self, path: str) -> str:
        """A plain-text answer (the Prometheus page)."""
        return await self.request("GET", path, text=True)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, body=body if body is not None else {})

    async def events(self, after: int | None = None) -> AsyncIterator[dict]:
        """Follow the SSE stream from after ``after`` (live only when None); ends when the daemon goes away."""
        http = self._client()
        params = {"after": after} if after is not None else {}
        try:
            async with http.stream("GET", "/events/stream", params=params,
                                   timeout=httpx.Timeout(self.timeout, read=None)) as resp:
                if resp.status_code != 200:
                    raise ApiError(f"event stream refused: HTTP {resp.status_code}", status=resp.status_code)
                data: list[str] = []
                async for line in resp.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except httpx.TransportError:
            await self.aclose()
            raise DaemonLost(f"the event stream from {self.url} ended", title="Daemon lost") from None
