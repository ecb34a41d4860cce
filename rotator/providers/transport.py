"""The httpx transport vendor calls go over: keep-alive HTTP/1.1 connections for one thread.

httpx's default transport wraps h11 in httpcore's connection pool: pool locks and
request bookkeeping, tracing hooks and an exception-mapping context manager around
every socket operation and every chunk of a body. For rotator's small JSON calls
those layers cost more CPU than h11's own parsing. ``VendorHttp`` gives each calling
thread a transport of its own, so this one needs no locks: one idle connection per
origin, speaking h11 directly.

What the default transport guarantees is kept: the connect, write and read timeouts
httpx hands each request; TLS through the given context (host name checked); headers
bounded as httpcore bounds them (100 KiB), and in time by the read timeout as a whole
(httpcore bounds each read only); an idle connection is not reused once the server has
closed it or after 5 seconds (httpx's keep-alive expiry), so a call is not sent down a
connection a NAT or load balancer may have dropped; the body is handed to httpx as a
stream, so content decoding and the caller's size cap and deadline apply as before.
Failures are httpx's ``TransportError``s: ``ConnectError`` or ``ConnectTimeout`` only
when nothing was sent.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import NoReturn

import h11
import httpx

#: What httpcore allows for a status line and headers.
MAX_HEADER_BYTES = 100 * 1024
#: httpx's default keep-alive expiry.
IDLE_EXPIRY = 5.0
_READ_SIZE = 64 * 1024

Origin = tuple[str, str, int]


class ThreadTransport(httpx.BaseTransport):
    """Keep-alive connections for one thread; not to be shared between threads."""

    def __init__(self, ssl_context: ssl.SSLContext, *, idle_expiry: float = IDLE_EXPIRY) -> None:
        self._ssl_context = ssl_context
        self._idle_expiry = idle_expiry
        self._idle: dict[Origin, _Connection] = {}
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.raw_host.decode("ascii"), url.port or _PORTS[url.scheme])
        connection = self._idle.pop(origin, None)
        if connection is not None and not connection.reusable(self._idle_expiry):
            connection.close()
            connection = None
        try:
            if connection is None:
                connection = _Connection.open(origin, self._ssl_context, timeouts.get("connect"))
            connection.send(request, timeouts.get("write"))
            head = connection.response(timeouts.get("read"))
        except Exception as exc:
            if connection is not None:
                connection.close()
            _raise_for(exc, request)
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=_Body(self, origin, connection, request, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    def release(self, origin: Origin, connection: _Connection) -> None:
        """Keep ``connection`` for the next call to ``origin``, if it can carry one."""
        if self._closed or not connection.next_cycle():
            connection.close()
            return
        previous = self._idle.pop(origin, None)
        if previous is not None:
            previous.close()
        self._idle[origin] = connection

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connection in idle.values():
            connection.close()


_PORTS = {"http": 80, "https": 443}


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._idle_since = time.monotonic()

    @classmethod
    def open(
        cls, origin: Origin, ssl_context: ssl.SSLContext, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if scheme == "https":
                try:
                    # The handshake runs under the connect timeout still set on the socket.
                    sock = ssl_context.wrap_socket(sock, server_hostname=host)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return cls(sock)

    def reusable(self, idle_expiry: float) -> bool:
        if time.monotonic() - self._idle_since >= idle_expiry:
            return False
        # An idle connection with something to read has been closed (or broken) by the server.
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return not poller.poll(0)

    def send(self, request: httpx.Request, timeout: float | None) -> None:
        target = request.url.raw_path
        wire = self._h11.send(
            h11.Request(method=request.method, target=target, headers=request.headers.raw)
        )
        body = request.read()
        if body:
            wire += self._h11.send(h11.Data(data=body))
        wire += self._h11.send(h11.EndOfMessage())
        self._sock.settimeout(timeout)
        try:
            self._sock.sendall(wire)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "write timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    def response(self, timeout: float | None) -> h11.Response:
        """The response's status line and headers (informational responses skipped).

        The read timeout bounds the whole head, not each piece of it: a server trickling
        its headers a byte at a time would otherwise hold the call for as long as it likes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self.next_event(timeout, deadline)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError(f"expected a response, got {type(event).__name__}")

    def next_event(
        self, timeout: float | None, deadline: float | None = None
    ) -> h11.Event | type[h11.PAUSED]:
        while (event := self._h11.next_event()) is h11.NEED_DATA:
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise httpx.ReadTimeout("the answer's headers took too long")
            self._sock.settimeout(timeout)
            try:
                data = self._sock.recv(_READ_SIZE)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            if not data and self._h11.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without answering"
                )
            self._h11.receive_data(data)
        return event  # type: ignore[return-value]

    def next_cycle(self) -> bool:
        """Ready the connection for another request; ``False`` if it cannot carry one."""
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        self._h11.start_next_cycle()
        self._idle_since = time.monotonic()
        return True

    def close(self) -> None:
        self._sock.close()


class _Body(httpx.SyncByteStream):
    """An answer's body as it arrives; a body not read to its end closes its connection."""

    def __init__(
        self,
        transport: ThreadTransport,
        origin: Origin,
        connection: _Connection,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout

    def __iter__(self) -> Iterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        try:
            # Each piece as it arrives, so a trickling server is seen piece by piece.
            while isinstance(event := connection.next_event(self._timeout), h11.Data):
                yield bytes(event.data)
        except Exception as exc:
            self.close()
            _raise_for(exc, self._request)
        self._connection = None
        self._transport.release(self._origin, connection)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _raise_for(exc: Exception, request: httpx.Request) -> NoReturn:
    """Raise ``exc`` in httpx's words, tied to ``request``."""
    if isinstance(exc, httpx.TransportError):
        exc.request = request
        raise exc
    if isinstance(exc, h11.RemoteProtocolError):
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    if isinstance(exc, h11.LocalProtocolError):
        raise httpx.LocalProtocolError(str(exc), request=request) from exc
    raise exc
