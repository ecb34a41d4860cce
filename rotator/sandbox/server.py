"""The HTTP server every vendor emulator runs in, with fault injection and a request log.

A vendor module describes its routes and its error body; this module serves
them on 127.0.0.1, checks the management token, and applies the faults a test
or a user asked for. ``/_sandbox/...`` is a small control API for
``rotator sandbox serve`` users (it is not part of any vendor's contract).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from rotator.sandbox.loopback import LoopbackHandler, LoopbackServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    path_params: Mapping[str, str] = field(default_factory=dict)
    #: The caller's IP address, for vendors that restrict keys by IP.
    client: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    #: Bytes sent as they are instead of ``body`` as JSON (a fault's HTML page, say).
    raw: bytes | None = None
    #: Seconds between the body's bytes: a server trickling its answer.
    trickle: float = 0.0
    #: Send no content-length and close the connection after the body, so only the
    #: bytes themselves tell a client how big the answer is.
    unsized: bool = False

    def encoded(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler

    def pattern(self, prefix: str = "") -> re.Pattern[str]:
        template = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        return re.compile("^" + re.escape(prefix) + template + "$")


@dataclass
class Fault:
    """Answer matching calls with ``status`` (or a timeout) instead of serving them.

    The answer is the vendor's error body, unless ``body`` (a raw text body,
    e.g. a proxy's HTML page) or ``size`` (a JSON body of that many bytes, sent
    without a content-length) is set. A status below 400 without either serves
    the call as usual, delivered as the other switches say: ``trickle`` sends
    the body a byte at a time with that many seconds between bytes.
    """

    method: str
    path: str
    status: int = 500
    times: int = 1
    #: Seconds, or an HTTP date (a ``str`` is sent as it is).
    retry_after: float | str | None = None
    timeout: bool = False
    body: str | None = None
    content_type: str = "text/html; charset=utf-8"
    size: int | None = None
    trickle: float = 0.0
    #: Extra response headers (a ``content-encoding`` the body does not have, say).
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class Hold:
    """Hold the ``nth`` matching call open until released, before or after serving it.

    ``after=True`` changes the vendor's state first, so a client killed while
    held has made the change without learning its result (a lost response).
    On release the connection is closed unanswered, unless ``resume`` is set:
    then the call is served as usual (a slow vendor, not a lost one).
    """

    method: str
    path: str
    after: bool = True
    nth: int = 1
    resume: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        if method != self.method or re.search(self.path, path) is None:
            return False
        self.seen += 1
        return self.seen == self.nth

    def wait_arrived(self, timeout: float = 30.0) -> None:
        if not self.arrived.wait(timeout):
            raise TimeoutError(f"no {self.method} {self.path} call arrived within {timeout}s")

    def release(self) -> None:
        self.released.set()


Validator = Callable[[Request, Response], None]


@dataclass(frozen=True)
class Slot:
    """A seeded key slot: the policy's ``key:`` selector and the key that exists in it."""

    selector: dict[str, Any]
    key_id: str
    secret: str


class Emulator(ABC):
    """One vendor's API: routes, authentication and error shape."""

    vendor: str
    #: Path prefix of the API under the server root (the part of ``base_url`` after the host).
    base_path: ClassVar[str] = ""
    #: (method, path regex) of the call behind each provider operation (create,
    #: regenerate, revoke, verify), so shared tests can hold or fail "the mint call".
    operations: ClassVar[dict[str, tuple[str, str]]]
    #: The vendor's published OpenAPI document that the tests check every call through this
    #: emulator against, both ways: a file name in rotator's tests/contracts/ (a plugin gives
    #: an absolute path); None when the vendor publishes none.
    openapi_spec: ClassVar[str | None] = None
    #: Statuses the vendor's documentation names but its OpenAPI document leaves out: their
    #: bodies are not checked against it.
    openapi_unlisted_statuses: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, tokens: set[str] | None = None) -> None:
        self.tokens = tokens if tokens is not None else set()
        self.lock = threading.RLock()

    @abstractmethod
    def routes(self) -> list[Route]:
        """The vendor's endpoints served by this emulator."""

    @abstractmethod
    def error(self, status: int, message: str) -> Response:
        """A response in the vendor's documented error shape."""

    def unauthorized(self, message: str) -> Response:
        """The answer to a call without a valid management token."""
        return self.error(401, message)

    def authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.removeprefix("Bearer ") in self.tokens

    def decorate(self, request: Request, response: Response) -> None:
        """Add headers the vendor sends on every response (rate limits, say)."""
        return

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The emulator's state without secrets, for ``/_sandbox/state``."""

    @abstractmethod
    def seed_slot(self) -> Slot:
        """Create a key slot holding one existing key, as a user's account would have."""

    @abstractmethod
    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        """Create what a policy's ``key:`` selector names, with the very ids it names.

        The slot's key is the one the selector names (``key_id`` empty when it
        names none), so a configuration written for a real account, such as
        config.example.yaml, can run against the emulator unchanged.
        """

    @abstractmethod
    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        """Whether ``secret`` currently authenticates as a key of the slot."""

    @abstractmethod
    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        """Ids of the keys that exist in the slot now."""

    @abstractmethod
    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        """Delete a key behind rotator's back, as a person in the vendor's console would."""

    def mark_used(self, key_id: str, at: datetime, calls: int = 1) -> None:
        """Record that a consumer used ``key_id`` at ``at`` (``calls`` times), for vendors
        that report key usage; the others have nothing to record."""
        raise NotImplementedError(f"{self.vendor} reports no key usage")


class EmulatorServer:
    """Serves one ``Emulator`` on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        port: int = 0,
        validator: Validator | None = None,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.emulator = emulator
        self.validator = validator
        self.delay = delay
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.log: list[tuple[str, str]] = []
        self._routes = [(route, route.pattern(emulator.base_path)) for route in emulator.routes()]
        self._state_lock = threading.Lock()
        self._httpd = LoopbackServer(self._handler_class(), port=port, tls=tls)

    @property
    def base_url(self) -> str:
        return self._httpd.url

    @property
    def vendor_url(self) -> str:
        """What a provider's ``base_url`` should be to reach this emulator."""
        return self.base_url + self.emulator.base_path

    def start(self) -> EmulatorServer:
        self._httpd.start()
        return self

    def stop(self) -> None:
        for hold in self.holds:
            hold.release()
        self._httpd.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- switches -------------------------------------------------------------

    def fail(self, method: str, path: str, **kwargs: Any) -> Fault:
        fault = Fault(method, path, **kwargs)
        with self._state_lock:
            self.faults.append(fault)
        return fault

    def hold(
        self, method: str, path: str, *, after: bool = True, nth: int = 1, resume: bool = False
    ) -> Hold:
        hold = Hold(method, path, after=after, nth=nth, resume=resume)
        with self._state_lock:
            self.holds.append(hold)
        return hold

    def clear(self) -> None:
        with self._state_lock:
            for hold in self.holds:
                hold.release()
            self.faults.clear()
            self.holds.clear()

    def calls(self, method: str | None = None, path: str = "") -> int:
        """How many vendor calls arrived (answered or not), by method and path pattern."""
        return sum(1 for m, p in self.log if (method is None or m == method) and re.search(path, p))

    def count_by_method(self) -> dict[str, int]:
        return dict(Counter(method for method, _ in self.log))

    # -- serving --------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._state_lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self._state_lock:
            for hold in self.holds:
                if not hold.released.is_set() and hold.matches(method, path):
                    return hold
        return None

    def serve(self, request: Request) -> Response | None:
        """The response to ``request``; ``None`` means: close the connection unanswered."""
        if request.path.startswith("/_sandbox/"):
            return self._control(request)
        self.log.append((request.method, request.path))
        if self.delay:
            time.sleep(self.delay)
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            if fault.timeout:
                time.sleep(3600)
                return None
            return self._finish(request, self._fault_response(request, fault))
        hold = self._take_hold(request.method, request.path)
        if hold is not None and not hold.after:
            hold.arrived.set()
            hold.released.wait()
            if not hold.resume:
                return None
        response = self._dispatch(request)
        if hold is not None and hold.after:
            hold.arrived.set()
            hold.released.wait()
            if not hold.resume:
                return None
        return self._finish(request, response)

    def _fault_response(self, request: Request, fault: Fault) -> Response:
        if fault.body is not None:
            response = Response(
                fault.status, raw=fault.body.encode(), content_type=fault.content_type
            )
        elif fault.size is not None:
            response = Response(fault.status, raw=_json_of_size(fault.size), unsized=True)
        elif fault.status < 400:
            response = self._dispatch(request)
        else:
            response = self.emulator.error(fault.status, _FAULT_MESSAGES.get(fault.status, "fault"))
        response.trickle = fault.trickle
        response.headers.update(fault.headers)
        if isinstance(fault.retry_after, str):
            response.headers["retry-after"] = fault.retry_after
        elif fault.retry_after is not None:
            response.headers["retry-after"] = f"{fault.retry_after:g}"
        return response

    def _finish(self, request: Request, response: Response) -> Response:
        self.emulator.decorate(request, response)
        if self.validator is not None:
            self.validator(request, response)
        return response

    def _dispatch(self, request: Request) -> Response:
        for route, pattern in self._routes:
            match = pattern.match(request.path)
            if match and route.method == request.method:
                if not self.emulator.authenticated(request):
                    return self.emulator.unauthorized("Unable to authenticate you.")
                routed = Request(**{**request.__dict__, "path_params": match.groupdict()})
                with self.emulator.lock:
                    return route.handler(routed)
        return self.emulator.error(404, "The resource you were accessing could not be found.")

    def _control(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/_sandbox/state":
            return Response(200, {**self.emulator.snapshot(), "calls": self.count_by_method()})
        if request.method == "POST" and request.path == "/_sandbox/faults":
            spec = request.json() or {}
            self.fail(
                spec.get("method", "GET"),
                spec.get("path", "."),
                status=int(spec.get("status", 500)),
                times=int(spec.get("times", 1)),
                retry_after=spec.get("retry_after"),
                body=spec.get("body"),
                size=spec.get("size"),
                trickle=float(spec.get("trickle", 0.0)),
            )
            return Response(201, {"faults": len(self.faults)})
        if request.method == "POST" and request.path == "/_sandbox/usage":
            return self._mark_used(request.json() or {})
        return Response(404, {"message": "unknown sandbox control endpoint"})

    def _mark_used(self, spec: dict[str, Any]) -> Response:
        """``{"key_id": ..., "at": ISO time (default now), "calls": 1}``: a consumer used a key."""
        at = datetime.fromisoformat(spec["at"]) if spec.get("at") else datetime.now(UTC)
        try:
            self.emulator.mark_used(str(spec.get("key_id", "")), at, int(spec.get("calls", 1)))
        except NotImplementedError as exc:
            return Response(400, {"message": str(exc)})
        except KeyError:
            return Response(404, {"message": "no such key"})
        return Response(204, None)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(LoopbackHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                    client=str(self.client_address[0]),
                )
                response = server.serve(request)
                if response is None:
                    self.close_connection = True
                    return
                payload = response.encoded()
                try:
                    self.send_response(response.status)
                    if payload:
                        self.send_header("content-type", response.content_type)
                    if response.unsized:
                        self.send_header("connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("content-length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if response.trickle:
                        self._trickle(payload, response.trickle)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _trickle(self, payload: bytes, pause: float) -> None:
                for index in range(len(payload)):
                    self.wfile.write(payload[index : index + 1])
                    self.wfile.flush()
                    time.sleep(pause)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return _Handler


def timestamp() -> str:
    """Now, as vendors write it: ISO 8601 in UTC with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_of_size(size: int) -> bytes:
    """A valid JSON object of exactly ``size`` bytes (at least 16)."""
    frame = b'{"padding": ""}'
    return frame[:-2] + b"x" * max(size - len(frame), 0) + frame[-2:]


_FAULT_MESSAGES = {
    429: "API rate limit exceeded.",
    500: "Unexpected server-side error",
    502: "Bad gateway",
    503: "Service unavailable",
}
