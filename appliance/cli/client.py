"""A small control API client for the CLI (and plugins' commands): reads the home's daemon.json and token."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ..errors import ApplianceError, DaemonNotRunning
from ..home import Home


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of text ``fields`` and ``files`` (name: (filename, bytes)), and its type."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode(),
                   value.encode(), b"\r\n"]
    for name, (filename, data) in files.items():
        safe = "".join(c for c in filename if c not in '"\r\n')
        chunks += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{safe}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, home: Path | Home | None, timeout: float = 30.0, *, url: str | None = None,
                 token: str | None = None):
        """A client of the daemon of ``home``, or (with ``url`` and ``token``) of any daemon, such as one
        reached through an SSH tunnel."""
        self.home = home if isinstance(home, Home) or home is None else Home(home)
        if url is None:
            info = self.home.read_daemon_info()
            url, token = info["url"], self.home.token()
        else:
            info = {"url": url}
        self.url = url.rstrip("/")
        self.info = info
        self.token = token
        self.timeout = timeout
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname, parts.port

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None, *,
                raw: bytes | None = None, content_type: str = "application/octet-stream",
                timeout: float | None = None) -> Any:
        """Call ``/api/v1{path}`` with a JSON ``body`` or ``raw`` bytes; an error answer is raised as
        ``ApplianceError`` with the daemon's words."""
        # Names typed by people (a model "my model", a file "first look.txt") travel quoted; the daemon reads
        # them back as typed and says what is wrong with them, where http.client would raise a traceback.
        target = "/api/v1" + quote(path) + ("?" + urlencode({k: v for k, v in query.items() if v is not None})
                                            if query else "")
        headers = self._headers()
        data = raw
        if raw is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._conn(timeout or self.timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (ConnectionError, OSError) as exc:
            where = f"`appliance up --home {self.home.root}`" if self.home else "`appliance up` on that machine"
            raise DaemonNotRunning(f"cannot reach the daemon at {self.url} ({exc}); is it running? "
                                   f"Start it with {where}") from None
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
