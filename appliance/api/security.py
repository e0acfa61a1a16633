"""The control API's gate, as plain ASGI (no per-request middleware stack): Host, Origin, then the token.

- Host must be exactly a loopback name (``localhost``, ``[::1]`` or a 127.0.0.0/8 address, any port) or one
  configured in ``[daemon] allowed_hosts``: this stops DNS rebinding, where a web page's own name resolves to
  127.0.0.1. Names are compared whole, never by prefix.
- A mutating request (anything but GET/HEAD/OPTIONS) that carries a cross-site ``Origin`` (or
  ``Sec-Fetch-Site: cross-site``) is refused, so a browser page cannot drive the daemon with a user's cookies
  or a guessed token. No CORS headers are ever sent.
- Every request needs ``Authorization: Bearer <token>``, compared in constant time. The token is never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from functools import partial
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PORT = re.compile(r"^\d{1,5}$")
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")


def host_name(value: str) -> str:
    """The name in a Host header (or an Origin's netloc), lowercased, without its port; "" if malformed.

    ``[::1]:80`` gives ``::1``; anything after the closing bracket but a port makes the whole value malformed,
    so ``[::1].evil.example`` is not taken for ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        inside, _, rest = value[1:].partition("]")
        return inside if rest == "" or (rest.startswith(":") and _PORT.match(rest[1:])) else ""
    name, sep, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name if not sep or _PORT.match(port) else ""


def is_loopback_name(name: str) -> bool:
    """Exactly ``localhost``, ``::1`` or a literal 127.0.0.0/8 address: never a name that only starts like one
    (``127.0.0.1.nip.io`` resolves to 127.0.0.1 but belongs to whoever registered it)."""
    if name in ("localhost", "::1"):
        return True
    try:
        return ipaddress.IPv4Address(name) in LOOPBACK_NET
    except ValueError:
        return False


class Gate:
    def __init__(self, app, *, token: str, allowed_hosts: Iterable[str] = ()):
        self.app = app
        self._token = token.encode()
        self.allowed = {h.lower() for h in allowed_hosts}

    def _host_ok(self, name: str) -> bool:
        return is_loopback_name(name) or name in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # A refused request's body is never read: its connection closes once the refusal is sent.
        deny = partial(_deny, send, close=headers.get("content-length", "0") != "0" or "transfer-encoding" in headers)
        host = host_name(headers.get("host", ""))
        if not host or not self._host_ok(host):
            return await deny(403, "Forbidden host",
                               f"Host {host or '(none)'!r} is not allowed; use 127.0.0.1 or localhost, or add "
                               "the name to [daemon] allowed_hosts")
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and (origin == "null" or not self._host_ok(host_name(urlsplit(origin).netloc))):
                return await deny(403, "Cross-site request",
                                   f"requests from origin {origin!r} may not change this daemon")
            if headers.get("sec-fetch-site") == "cross-site":
                return await deny(403, "Cross-site request", "cross-site requests may not change this daemon")
        auth = headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return await deny(401, "Unauthorized",
                               "missing bearer token; the CLI reads it from the home's token file",
                               {"www-authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return await deny(401, "Unauthorized", "wrong token", {"www-authenticate": "Bearer"})
        return await self.app(scope, receive, send)


async def _deny(send, status: int, title: str, message: str, extra: dict | None = None, *, close: bool) -> None:
    body = json.dumps({"error": {"title": title, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
