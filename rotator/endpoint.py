"""The daemon's HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics``, served by waitress.

waitress reads requests on one asynchronous loop and hands only complete ones
to its worker threads, so connections that trickle or stop half-way through a
request cost a socket, not a thread: ``/healthz`` keeps answering. Each
connection is closed after ``daemon.request_timeout`` without progress, at most
``daemon.max_connections`` are open at once, and requests are small (no
endpoint takes a body).

Answers: ``/healthz`` 200 while the scheduler runs, else 503 with the reason
(liveness: restart me); ``/readyz`` 200 with its checks when the database,
Vault and the schema are fine, else 503; ``/metrics`` the Prometheus text
format (prometheus-client's WSGI application).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_wsgi_app

from rotator.config.model import DaemonConfig
from rotator.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: The longest request line plus headers accepted; a probe or a scrape needs a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
#: Worker threads: probes and scrapes are short, and half-sent requests never reach them.
THREADS = 4


class Endpoint:
    """The listening socket is bound on construction, so a used port is found before any work."""

    def __init__(
        self,
        settings: DaemonConfig,
        *,
        alive: Callable[[], str | None],
        ready: Callable[[], dict[str, bool]],
        registry: CollectorRegistry,
    ) -> None:
        from waitress.server import TcpWSGIServer, create_server

        self._alive = alive
        self._ready = ready
        self._metrics = make_wsgi_app(registry)
        timeout = max(1, round(settings.request_timeout.total_seconds()))
        try:
            server = create_server(
                self._app,
                host=settings.host,
                port=settings.port,
                threads=THREADS,
                connection_limit=settings.max_connections,
                channel_timeout=timeout,
                # How often idle connections are looked for: the timeout is kept within a second.
                cleanup_interval=1,
                max_request_header_size=MAX_HEADER_BYTES,
                max_request_body_size=0,
                # poll(), unlike select(), is not limited to file descriptors below 1024.
                asyncore_use_poll=True,
                expose_tracebacks=False,
                ident="rotator",
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port} (daemon.host, daemon.port): "
                f"{exc.strerror or exc}; stop the process using it or set another daemon.port"
            ) from None
        # One host and port: always a single TCP server, never waitress's multi-socket one.
        assert isinstance(server, TcpWSGIServer)
        self._server = server
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=1)

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, 405, {"error": "only GET and HEAD"})
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            problem = self._alive()
            if problem is None:
                return _answer(start_response, 200, {"status": "ok"})
            return _answer(start_response, 503, {"status": "failing", "reason": problem})
        if path == "/readyz":
            checks = self._ready()
            return _answer(start_response, 200 if all(checks.values()) else 503, checks)
        return _answer(start_response, 404, {"error": "not found: /healthz, /readyz, /metrics"})


def _answer(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
    start_response(
        f"{status} {reason[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
