"""The loopback servers the tests run on (emulators, Vault proxy, webhook receiver) cost no waiting.

Hundreds of tests each start and stop them and call through them: a server that waits
for its poll to stop, or a response that waits for the client's delayed ACK, would be
paid on every one of those tests.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest

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


class _Endless(LoopbackHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", str(1 << 30))
        self.end_headers()
        while True:
            self.wfile.write(b"x" * 65536)


class _Observed(LoopbackServer):
    """Tells when the server is done with a connection: after any error was handled."""

    def __init__(self, handler: type[LoopbackHandler]) -> None:
        super().__init__(handler)
        self.done = threading.Event()

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.done.set()


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A client that stops reading a bad answer (rotator refusing an oversized or HTML body)
    # is routine for a server; a traceback on the test's stderr is not.
    server = _Observed(_Endless).start()
    host, port = server.server_address[:2]
    try:
        client = socket.create_connection((str(host), port))
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        client.recv(1024)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert server.done.wait(10)
    finally:
        server.stop()

    assert "Traceback" not in capsys.readouterr().err
