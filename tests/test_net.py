"""The daemon's listening sockets: an accepted connection has Nagle off, so a response written in two parts
(headers, then body) is not held back waiting for the client's delayed ACK (~40 ms on every reused
connection before this was fixed)."""

from __future__ import annotations

import asyncio
import socket

from appliance.net import listen


def test_connections_accepted_on_a_listen_socket_have_tcp_nodelay():
    async def main() -> int:
        sock = listen("127.0.0.1", 0)
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                s = transport.get_extra_info("socket")
                seen.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == 1
