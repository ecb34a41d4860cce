"""An HTTP server on a loopback port, serving on a daemon thread, that stops at once.

The vendor emulators, and the test suite's stand-ins for Vault, webhooks and the
Kubernetes API, each serve one test or one sandbox session. ``socketserver``'s
``shutdown`` waits for the serving loop's next poll (half a second by default);
``stop`` wakes the loop with a connection instead, so a server stops in about a
millisecond, and a burst of connections queues for it. ``LoopbackHandler`` answers
without the 40 ms that Nagle's algorithm and the client's delayed ACK add to a response
written in two pieces.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Seconds between the serving loop's checks for ``stop``, should the wake-up be missed.
POLL_INTERVAL = 0.5


class LoopbackHandler(BaseHTTPRequestHandler):
    """A request handler whose headers and body leave in one segment, without an access log."""

    protocol_version = "HTTP/1.1"
    # Written separately, headers and body would wait for the client's delayed ACK (40 ms)
    # under Nagle's algorithm, which real servers do not make their clients wait.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``handler`` on ``host`` (a free port unless ``port``) until ``stop``."""

    daemon_threads = True
    # A burst of clients (32 rotations starting at once) must queue, not have its SYNs
    # dropped and retried a second later, as socketserver's default of 5 would.
    request_queue_size = 128

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        super().__init__((host, port), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    @property
    def url(self) -> str:
        """``scheme://host:port`` of this server."""
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print a handler's traceback, unless the client hung up: real servers carry on.

        rotator stops reading an answer it refuses (too large, not JSON), and a test's
        client may drop a connection on purpose; neither is the server's fault.
        """
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; requests in flight go on."""
        if self._thread.is_alive():
            stopping = threading.Thread(target=self.shutdown, daemon=True)
            stopping.start()
            # ``shutdown`` raises its flag first; a connection wakes the loop to see it.
            while stopping.is_alive():
                self._wake()
                stopping.join(0.01)
        self.server_close()

    def _wake(self) -> None:
        host, port = self.server_address[:2]
        try:
            socket.create_connection((str(host), port), timeout=1).close()
        except OSError:
            return  # The loop has stopped listening: it is on its way out.
