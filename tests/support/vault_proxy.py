"""A loopback HTTP proxy in front of OpenBao that can hold or fail a chosen call.

It gives crash tests a deterministic kill point around the Vault write, just
as the vendor emulators' holds do around vendor calls, and answers chosen
calls with an error as an unavailable Vault would (``fail``). It also serves
as a forward proxy (``HTTP_PROXY``): absolute request targets go to OpenBao too.
It counts the connections clients open (``connections``) and can gather calls
(``gather``) so that a test knows how many were in flight at once.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import httpx

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer
from rotator.sandbox.server import Fault, Hold

_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}


class VaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.holds: list[Hold] = []
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []
        #: TCP connections clients opened to the proxy so far.
        self.connections = 0
        self._gathering: threading.Barrier | None = None
        self._lock = threading.Lock()
        # OpenBao is served over plain HTTP: no certificate store to load for each proxy.
        self._client = httpx.Client(timeout=30, verify=False)  # noqa: S501
        self._httpd = LoopbackServer(self._handler()).start()

    @property
    def address(self) -> str:
        return self._httpd.url

    def hold(self, method: str, path: str, *, after: bool, resume: bool = False) -> Hold:
        """Hold the first matching call; with ``resume`` (and ``after``) answer it on release."""
        hold = Hold(method, path, after=after, resume=resume)
        with self._lock:
            self.holds.append(hold)
        return hold

    def fail(self, method: str, path: str, *, status: int = 503, times: int = 1) -> Fault:
        """Answer the next ``times`` matching calls with ``status``, without passing them on."""
        fault = Fault(method, path, status=status, times=times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def gather(self, calls: int) -> None:
        """Pass each batch of ``calls`` calls on only once all of them have arrived."""
        self._gathering = threading.Barrier(calls, timeout=30)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def stop(self) -> None:
        for hold in self.holds:
            hold.release()
        self._httpd.stop()
        self._client.close()

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self._lock:
            for hold in self.holds:
                if not hold.released.is_set() and hold.matches(method, path):
                    return hold
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(LoopbackHandler):
            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy.connections += 1

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                path = target.path + (f"?{target.query}" if target.query else "")
                proxy.calls.append((self.command, target.path))
                if proxy._gathering is not None:
                    proxy._gathering.wait()
                fault = proxy._take_fault(self.command, target.path)
                if fault is not None:
                    self._answer(
                        fault.status, {"content-type": "application/json"}, b'{"errors":["fault"]}'
                    )
                    return
                hold = proxy._take_hold(self.command, target.path)
                if hold is not None and not hold.after:
                    hold.arrived.set()
                    hold.released.wait()
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                response = proxy._client.request(
                    self.command, proxy.upstream + path, headers=headers, content=body
                )
                if hold is not None:
                    hold.arrived.set()
                    hold.released.wait()
                    if not hold.resume:
                        self.close_connection = True
                        return
                headers = {
                    name: value
                    for name, value in response.headers.items()
                    if name.lower() not in _HOP_HEADERS | {"content-encoding"}
                }
                self._answer(response.status_code, headers, response.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = _handle

        return Handler
