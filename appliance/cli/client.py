"""A small control API client for the CLI (and plugins' commands): reads the home's daemon.json and token."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import ApplianceError, DaemonNotRunning
from ..home import Home


class Client:
    def __init__(self, home: Path | Home, timeout: float = 30.0):
        self.home = home if isinstance(home, Home) else Home(home)
        info = self.home.read_daemon_info()
        self.url = info["url"]
        self.info = info
        self.token = self.home.token()
        self.timeout = timeout
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname, parts.port

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        """Call ``/api/v1{path}``; an error answer is raised as ``ApplianceError`` with the daemon's words."""
        target = "/api/v1" + path + ("?" + urlencode({k: v for k, v in query.items() if v is not None})
                                     if query else "")
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._conn(self.timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (ConnectionError, OSError) as exc:
            raise DaemonNotRunning(f"cannot reach the daemon at {self.url} ({exc}); is it running? "
                                   f"Start it with `appliance up --home {self.home.root}`") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if resp.status >= 400:
            err = (payload or {}).get("error") if isinstance(payload, dict) else None
            if isinstance(err, dict):
                raise ApplianceError(err.get("message", ""), title=err.get("title"), status=resp.status)
            raise ApplianceError(f"HTTP {resp.status}: {raw[:200]!r}", status=resp.status)
        return payload

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def wait_job(self, job: dict) -> dict:
        """The job once it has ended (succeeded, failed or cancelled): long polls, told of the end at once."""
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            job = self.get(f"/jobs/{job['id']}", wait=min(20, max(1, int(self.timeout) - 5)))
        return job

    def stream_events(self, after: int | None = None, types: str | None = None) -> Iterator[dict]:
        """Follow the SSE stream; yields each event as a dict until the daemon ends the stream."""
        query = {k: v for k, v in {"after": after, "type": types}.items() if v is not None}
        target = "/api/v1/events/stream" + ("?" + urlencode(query) if query else "")
        conn = self._conn(None)
        try:
            conn.request("GET", target, headers={**self._headers(), "Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApplianceError(f"event stream refused: HTTP {resp.status}", status=resp.status)
            data_lines: list[str] = []
            while True:
                line = resp.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith("data:"):
                    data_lines.append(text[5:].strip())
                elif text == "" and data_lines:
                    yield json.loads("\n".join(data_lines))
                    data_lines = []
        except (ConnectionError, OSError):
            return
        finally:
            conn.close()
