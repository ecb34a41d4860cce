"""The transport vendor calls go over (``rotator/providers/transport.py``), over real sockets.

What the emulators cannot play is played by a raw loopback server that answers each
connection as a test says: one that drops a kept-alive connection, never answers, or
sends endless headers. Bodies (trickled, oversized, unsized, mis-encoded) and TLS are
the emulators' business (test_untrusted_responses.py, test_transport.py).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import stamina

from rotator.errors import VendorUnavailable
from rotator.providers.http import VendorHttp, json_error_reader
from rotator.providers.request import VendorRequest
from rotator.providers.transport import ThreadTransport
from rotator.tls import default_context

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
#: Serves one connection: the socket, and how many connections came before it.
Serve = Callable[[socket.socket, int], None]


@pytest.fixture(autouse=True)
def retries_without_waiting() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class RawServer:
    """A loopback TCP server handing each connection to ``serve`` on a thread of its own."""

    def __init__(self, serve: Serve) -> None:
        self.connections = 0
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            seen, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(sock, seen), daemon=True).start()

    def stop(self) -> None:
        self._listener.close()


def read_request(sock: socket.socket) -> bool:
    """Read one bodiless request's head; ``False`` if the client closed instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return False
        data += piece
    return True


def keep_alive(sock: socket.socket, _: int) -> None:
    with sock:
        while read_request(sock):
            sock.sendall(OK)


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[[Serve], RawServer]]:
    servers: list[RawServer] = []

    def start(how: Serve) -> RawServer:
        servers.append(RawServer(how))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def vendor_http(
    url: str, *, timeout: float = 5.0, transport: ThreadTransport | None = None
) -> VendorHttp:
    return VendorHttp(
        vendor="acme",
        base_url=url,
        auth=lambda _: {},
        timeout=timeout,
        read_error=json_error_reader("message"),
        transport=transport,
    )


GET = VendorRequest.build("GET", "/keys")


def test_calls_from_one_thread_share_one_kept_alive_connection(
    serve: Callable[[Serve], RawServer],
) -> None:
    server = serve(keep_alive)
    http = vendor_http(server.url)

    for _ in range(5):
        http.send(GET)
    http.close()

    assert server.connections == 1


def test_a_connection_the_vendor_closed_while_idle_is_not_used_for_the_next_call(
    serve: Callable[[Serve], RawServer],
) -> None:
    """A POST sent down a dropped connection would fail and could not be repeated."""
    dropped = threading.Event()

    def answer_once_then_drop(sock: socket.socket, _: int) -> None:
        # Answers as if keeping the connection, then closes it while the client holds it idle.
        with sock:
            if read_request(sock):
                sock.sendall(OK)
        dropped.set()

    server = serve(answer_once_then_drop)
    http = vendor_http(server.url)
    http.send(GET)
    assert dropped.wait(5)

    answer = http.send(VendorRequest.build("POST", "/keys", body={"name": "k"}))
    http.close()

    assert answer.status_code == 200
    assert server.connections == 2


def test_an_idle_connection_is_not_reused_past_its_expiry(
    serve: Callable[[Serve], RawServer],
) -> None:
    server = serve(keep_alive)
    transport = ThreadTransport(default_context(), idle_expiry=0.0)
    http = vendor_http(server.url, transport=transport)

    http.send(GET)
    http.send(GET)
    transport.close()

    assert server.connections == 2


def test_a_refused_connection_is_a_call_that_never_reached_the_vendor() -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    http = vendor_http(url)

    with pytest.raises(VendorUnavailable, match="cannot connect") as raised:
        http.send(VendorRequest.build("POST", "/keys", body={}))

    assert raised.value.never_sent


def test_a_vendor_that_never_answers_times_out(serve: Callable[[Serve], RawServer]) -> None:
    hold = threading.Event()

    def silent(sock: socket.socket, _: int) -> None:
        with sock:
            hold.wait(10)

    server = serve(silent)
    http = vendor_http(server.url, timeout=0.3)
    try:
        with pytest.raises(VendorUnavailable, match="timed out") as raised:
            http.send(VendorRequest.build("POST", "/keys", body={}))
    finally:
        hold.set()

    assert not raised.value.never_sent


def test_headers_without_end_are_refused_past_100_kib(serve: Callable[[Serve], RawServer]) -> None:
    def endless_headers(sock: socket.socket, _: int) -> None:
        with sock:
            read_request(sock)
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            try:
                for n in range(10_000):
                    sock.sendall(b"X-Filler-%d: %s\r\n" % (n, b"x" * 100))
            except OSError:
                return

    server = serve(endless_headers)

    with pytest.raises(VendorUnavailable, match="connection failed"):
        vendor_http(server.url).send(GET)


def test_headers_trickled_slower_than_the_read_timeout_allows_time_out(
    serve: Callable[[Serve], RawServer],
) -> None:
    """Each byte arrives within the read timeout; the whole head does not."""
    hang_up = threading.Event()

    def trickled_headers(sock: socket.socket, _: int) -> None:
        with sock:
            read_request(sock)
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            try:
                while not hang_up.wait(0.05):
                    sock.sendall(b"x")
            except OSError:
                return

    server = serve(trickled_headers)
    http = vendor_http(server.url, timeout=0.3)
    # Without a bound on the whole head, the call would wait for the server to hang up.
    threading.Timer(10, hang_up.set).start()
    try:
        with pytest.raises(VendorUnavailable, match="timed out"):
            http.send(VendorRequest.build("POST", "/keys", body={}))
    finally:
        hang_up.set()
