"""Listening sockets for the daemon's ports (the control API, and plugins' own servers such as serving)."""

from __future__ import annotations

import socket

from .errors import ApplianceError


def listen(host: str, port: int, *, hint: str = "choose another port", backlog: int = 2048) -> socket.socket:
    """A non-blocking listening TCP socket; a taken or invalid address is an ``ApplianceError`` saying so.

    Binding here, before a server starts, lets port 0 be resolved (``sock.getsockname()[1]``) and lets a taken
    port fail the start loudly instead of inside a server thread.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Named as TCP, not left at protocol 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets whose
    # protocol says TCP, and with Nagle on, a response written as headers then body waited ~40 ms for the
    # client's delayed ACK on every reused connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ApplianceError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}",
                             title="Port unavailable") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
