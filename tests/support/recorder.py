"""A loopback HTTP server that records every request and answers as a test says.

It plays the hosts a request must never reach (the target of a hostile
redirect) and the servers that answer oddly (a Vault that redirects).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer


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
        self._httpd = LoopbackServer(self._handler(), host=host, tls=tls).start()

    @property
    def url(self) -> str:
        return self._httpd.url

    def stop(self) -> None:
        self._httpd.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(LoopbackHandler):
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

        return Handler
