"""A loopback HTTP server that records every request and answers as a test says.

It plays the hosts a request must never reach (the target of a hostile
redirect) and the servers that answer oddly (a Vault that redirects).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


#: (status, headers, body) for a recorded request.
Answer = Callable[[Recorded], tuple[int, dict[str, str], bytes]]


def empty_json(_: Recorded) -> tuple[int, dict[str, str], bytes]:
    return 200, {"content-type": "application/json"}, b"{}"


class Recorder:
    def __init__(
        self,
        host: str = "127.0.0.1",
        answer: Answer = empty_json,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer
        self.requests: list[Recorded] = []
        #: Client connections open now.
        self.open_connections = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with recorder._lock:
                    recorder.open_connections += 1

            def finish(self) -> None:
                super().finish()
                with recorder._lock:
                    recorder.open_connections -= 1

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                recorder.requests.append(request)
                status, headers, body = recorder.answer(request)
                self.send_response(status)
                for name, value in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Silence the default stderr access log."""

        return Handler
