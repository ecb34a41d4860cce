"""The loopback servers the tests run on (emulators, Vault proxy, webhook receiver) cost no waiting.

Hundreds of tests each start and stop them and call through them: a server that waits
for its poll to stop, or a response that waits for the client's delayed ACK, would be
paid on every one of those tests.
"""

from __future__ import annotations

import socket
import time

import httpx

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer
from tests.support.servers import OpenBaoServer
from tests.support.vault_proxy import VaultProxy

#: Far above a loopback round trip and far below a delayed ACK (40 ms) times ``CALLS``.
CALLS = 10
BUDGET = 0.2


class _Ok(LoopbackHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_a_loopback_server_stops_without_waiting_for_its_next_poll() -> None:
    server = LoopbackServer(_Ok, poll_interval=5).start()
    assert httpx.get(server.url).text == "ok"

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 1


def test_a_stopped_loopback_server_refuses_connections() -> None:
    server = LoopbackServer(_Ok).start()
    server.stop()

    try:
        httpx.get(server.url, timeout=1)
    except httpx.ConnectError:
        return
    raise AssertionError("a stopped server answered")


def test_calls_through_the_vault_proxy_wait_for_no_delayed_ack(openbao: OpenBaoServer) -> None:
    proxy = VaultProxy(openbao.address)
    try:
        with httpx.Client(base_url=proxy.address) as client:
            client.get("/v1/sys/health")
            started = time.monotonic()
            for _ in range(CALLS):
                client.get("/v1/sys/health").raise_for_status()
            elapsed = time.monotonic() - started
    finally:
        proxy.stop()

    assert elapsed < BUDGET, f"{CALLS} proxied calls took {elapsed:.3f}s"


def test_a_burst_of_connections_waits_in_the_listen_queue_until_the_server_accepts() -> None:
    # Thirty-two rotations connect to one emulator at once; socketserver's default backlog
    # of 5 drops the rest of the burst's SYNs and the kernel retries them a second later.
    server = LoopbackServer(_Ok)  # not serving yet: nothing is accepted
    host, port = server.server_address[:2]
    connections = []
    try:
        for _ in range(32):
            connections.append(socket.create_connection((str(host), port), timeout=0.5))
    finally:
        for connection in connections:
            connection.close()
        server.server_close()

    assert len(connections) == 32
