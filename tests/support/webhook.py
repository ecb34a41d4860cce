"""A loopback webhook receiver that records what it was sent, or fails on purpose."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer


class WebhookReceiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        #: Seconds to hold each request before answering (a receiver that hangs).
        self.delay = 0.0
        self.received: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._httpd = LoopbackServer(self._handler()).start()

    @property
    def url(self) -> str:
        return f"{self._httpd.url}/hook"

    def stop(self) -> None:
        self._httpd.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.raw.append(body)
                receiver.received.append(json.loads(body))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

        return Handler
