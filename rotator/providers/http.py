"""The HTTP plumbing every vendor client shares: timeouts, retries, error mapping.

Each vendor module supplies how to authenticate and how to read its error
body, and builds each call as a ``VendorRequest`` (request.py: the object
``plan`` and ``--dry-run`` show). This module sends it, turns status codes
into rotator's ``VendorError`` family and retries what is safe to retry: 429
(honouring ``Retry-After``, or else the ``RateLimit-Reset`` of an exhausted
hourly budget, when either fits in the call's retry budget) always, 5xx and
network failures only for idempotent calls, because a repeated ``POST`` could
mint a second key. Every call first takes a token from the account's limiter
(``ratelimit.py``) when one is configured. Bodies are read and parsed by
``rotator.providers.responses``, within its bounds.

Failed calls are counted through ``rotator.recorder``. httpx, stamina and the
trust store are imported when a client is made or a call is sent, not with this
module: validating a configuration imports every provider module it names, and
a CronJob's ``rotate due`` that finds nothing due never makes a vendor call.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rotator.errors import (
    VendorAuthError,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorRateLimited,
    VendorUnavailable,
)
from rotator.providers.base import Provider, SelectorT, SettingsT
from rotator.providers.ratelimit import Limiter, limiter_for
from rotator.providers.request import VendorRequest
from rotator.providers.responses import ShapeT, json_body, parse_body, plain_detail, read_body
from rotator.recorder import count_vendor_error
from rotator.secret import FileSecret, Secret, scrub

if TYPE_CHECKING:
    import httpx

ErrorReader = Callable[["httpx.Response"], str]
_MAX_MESSAGE = 300
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "PATCH"})
# Headers that describe the body as it was on the wire; the body kept is already decoded.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_CLIENT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
_SenderT = TypeVar("_SenderT", "httpx.BaseTransport", "httpx.Client")


class VendorHttp:
    """HTTP to one vendor account, a connection pool per calling thread, speaking in
    ``VendorError``s."""

    def __init__(
        self,
        *,
        vendor: str,
        base_url: str,
        auth: Callable[[Secret | None], Mapping[str, str]],
        timeout: float,
        headers: Mapping[str, str] | None = None,
        read_error: ErrorReader,
        attempts: int = 5,
        retry_timeout: float = 60.0,
        ca_bundle: Path | None = None,
        limiter: Limiter | None = None,
        reauth: Callable[[], bool] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: httpx's own seam, for tests that answer calls without a server."""
        import httpx

        from rotator.tls import context_for_url

        self.vendor = vendor
        self._timeout = timeout
        self._limiter = limiter
        self._auth = auth
        #: Called once on a 401/403: whether a fresh credential is now in use, worth one retry.
        self._reauth = reauth
        self._read_error = read_error
        self._attempts = attempts
        self._retry_timeout = retry_timeout
        #: Calls go to absolute URLs made here: httpx's joining of a relative one to a
        #: client's base_url parses URLs three times a call.
        self._base_url = base_url.rstrip("/") + "/"
        #: httpx.Client's defaults, which calls carried when they went through one.
        self._headers = httpx.Headers(_CLIENT_HEADERS)
        self._headers["User-Agent"] = f"python-httpx/{httpx.__version__}"
        self._headers.update(headers or {})
        self._timeouts = {"timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)).as_dict()}
        # Every call goes to base_url: a plain-http one needs no trust store (~18 ms to load).
        self._verify = context_for_url(self._base_url, ca_bundle)
        self._transport = transport
        self._local = threading.local()
        self._senders: list[httpx.BaseTransport | httpx.Client] = []
        self._senders_lock = threading.Lock()

    def _sender(self) -> Callable[[httpx.Request], httpx.Response]:
        """How this thread sends a request: on a transport of its own, straight.

        httpx.Client's per-call work (cookie jar, URL joining, auth and redirect
        hooks) was a quarter of a vendor call's CPU, and rotator uses none of it: it
        follows no redirect and keeps no cookie. Only when the environment names a
        proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``) is a client used, which
        applies it with ``NO_PROXY`` as httpx always has. Threads sharing one connection
        pool queue on its lock, whose bookkeeping grows with the connections in it: at
        32 threads a call costs about 1.5x the CPU it does on a pool of its own.
        """
        import httpx

        from rotator.providers.transport import ThreadTransport

        send: Callable[[httpx.Request], httpx.Response] | None = getattr(self._local, "send", None)
        if send is not None:
            return send
        if self._transport is not None:
            send = self._transport.handle_request
        elif _environment_names_a_proxy():
            client = self._keep(httpx.Client(verify=self._verify, follow_redirects=False))
            send = functools.partial(client.send, stream=True)
        else:
            send = self._keep(ThreadTransport(self._verify)).handle_request
        self._local.send = send
        return send

    def _keep(self, sender: _SenderT) -> _SenderT:
        with self._senders_lock:
            self._senders.append(sender)
        return sender

    def send(self, request: VendorRequest) -> httpx.Response:
        """Send ``request``, retrying what is safe; raise a ``VendorError`` on failure.

        A ``Retry-After`` longer than what is left of the retry budget is not
        slept through: the ``VendorRateLimited`` carrying it ends the call, so
        no policy lock is held for minutes.
        """
        import stamina

        method = request.method
        safe_to_repeat = method in _IDEMPOTENT if request.idempotent is None else request.idempotent
        budget_ends = time.monotonic() + self._retry_timeout
        reauthed = False

        def backoff(exc: Exception) -> bool | float:
            nonlocal reauthed
            if isinstance(exc, VendorAuthError):
                # A refused credential was not acted on: repeating with a fresh one is safe.
                if reauthed or self._reauth is None:
                    return False
                reauthed = True
                return self._reauth()
            if isinstance(exc, VendorRateLimited):
                wait = exc.retry_after
                if wait is None:
                    return True
                return wait if wait <= budget_ends - time.monotonic() else False
            if isinstance(exc, VendorUnavailable):
                return safe_to_repeat or exc.never_sent
            return False

        retrying = self._retry_timeout > 0  # retry_for: 0s is one try
        for attempt in stamina.retry_context(
            on=backoff,
            attempts=self._attempts if retrying else 1,
            timeout=self._retry_timeout if retrying else None,
            wait_max=30.0,
        ):
            with attempt:
                return self._send(request)
        raise AssertionError("unreachable: retry_context either returns or raises")

    def fetch(self, shape: type[ShapeT], request: VendorRequest) -> ShapeT:
        """``send``, then its JSON body parsed as ``shape`` (see ``responses.parse_body``)."""
        return parse_body(
            self.send(request), shape, where=self._where(request.method, request.path)
        )

    def _where(self, method: str, path: str) -> str:
        return f"{self.vendor} {method} {path}"

    def _send(self, vendor_request: VendorRequest) -> httpx.Response:
        import httpx

        where = self._where(vendor_request.method, vendor_request.path)
        if self._limiter is not None:
            self._limiter.acquire()
        deadline = time.monotonic() + self._timeout
        url = httpx.URL(self._base_url + vendor_request.path.lstrip("/"))
        if vendor_request.params:
            url = url.copy_merge_params(vendor_request.params)
        headers = self._headers.copy()  # names match whatever their case, as in a client
        headers.update(self._auth(vendor_request.credential))
        headers.update(dict(vendor_request.headers))
        request = httpx.Request(
            vendor_request.method,
            url,
            json=vendor_request.json(),
            headers=headers,
            extensions=self._timeouts,
        )
        try:
            streamed = self._sender()(request)
            streamed.request = request
            try:
                content = read_body(streamed, where=where, deadline=deadline, timeout=self._timeout)
            finally:
                streamed.close()
        except httpx.TransportError as exc:
            count_vendor_error(self.vendor, "network")
            raise _unavailable(where, exc) from None
        except httpx.DecodingError:
            encoding = streamed.headers.get("content-encoding", "none")
            raise VendorError(
                f"{where} answered a body that does not decode as its content-encoding "
                f"{encoding} says; a proxy in front of the vendor may be mangling answers"
            ) from None
        kept = [(k, v) for k, v in streamed.headers.multi_items() if k not in _WIRE_HEADERS]
        response = httpx.Response(
            streamed.status_code, headers=kept, content=content, request=request
        )
        if response.is_success:
            return response
        raise self._error(where, response)

    def _error(self, where: str, response: httpx.Response) -> VendorError:
        status = response.status_code
        count_vendor_error(self.vendor, str(status))
        detail = scrub(self._read_error(response))[:_MAX_MESSAGE]
        message = f"{where} -> {status}: {detail}"
        if status in (401, 403):
            return VendorAuthError(
                f"{message}; check the provider's token and its scopes", status=status
            )
        if status == 404:
            return VendorNotFound(message, status=status)
        if status == 409:
            return VendorConflict(message, status=status)
        if status == 429:
            return self._rate_limited(message, response)
        if status >= 500:
            return VendorUnavailable(message, status=status)
        return VendorError(message, status=status)

    def _rate_limited(self, message: str, response: httpx.Response) -> VendorRateLimited:
        """A 429: a burst limit says ``Retry-After``; an exhausted hourly budget its reset time."""
        wait = _retry_after(response)
        if wait is not None:
            if wait > self._retry_timeout:
                message += (
                    f"; the vendor asks to wait {wait:g}s, longer than rotator waits within a "
                    "call: the rotation is retried later"
                )
            return VendorRateLimited(message, retry_after=wait)
        reset = _number(response.headers.get("ratelimit-reset"))
        if reset is None or reset <= 0:
            return VendorRateLimited(message)
        retry_at = datetime.fromtimestamp(reset, UTC)
        return VendorRateLimited(
            f"{message}; the hourly request budget is spent until {retry_at:%Y-%m-%d %H:%M:%S} UTC",
            retry_after=max(0.0, reset - time.time()),
            retry_at=retry_at,
        )

    def close(self) -> None:
        """Close every thread's connections."""
        with self._senders_lock:
            senders, self._senders = self._senders, []
        for sender in senders:
            sender.close()


def _environment_names_a_proxy() -> bool:
    """Whether httpx would route some call through a proxy the environment names."""
    from urllib.request import getproxies

    proxies = getproxies()  # what httpx reads them with
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def _unavailable(where: str, exc: httpx.TransportError) -> VendorUnavailable:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return VendorUnavailable(
            f"{where}: cannot connect ({scrub(str(exc))}); check base_url and the network",
            never_sent=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return VendorUnavailable(f"{where}: timed out; the vendor may be slow or down")
    return VendorUnavailable(f"{where}: connection failed ({scrub(str(exc))})")


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from ``Retry-After``: delay-seconds or an HTTP date (RFC 9110)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_error_reader(*fields: str) -> ErrorReader:
    """A reader that joins the named fields of a JSON error body (falls back to the text)."""

    def read(response: httpx.Response) -> str:
        try:
            body = json_body(response)
        except ValueError:
            return plain_detail(response)
        if isinstance(body, dict):
            parts = [str(body[name]) for name in fields if body.get(name) not in (None, "")]
            if parts:
                return " / ".join(parts)
        return str(body)

    return read


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from a vendor body (``Z`` accepted); ``None`` if absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class HttpProvider(Provider[SettingsT, SelectorT]):
    """A provider whose vendor speaks HTTP: builds its ``VendorHttp`` from the settings."""

    vendor_name: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    extra_headers: ClassVar[dict[str, str]] = {}
    #: Fields of the vendor's JSON error body that explain the error, in order.
    error_fields: ClassVar[tuple[str, ...]] = ("message",)

    def __init__(self, settings: SettingsT, token: Secret) -> None:
        super().__init__(settings, token)
        base_url = settings.base_url or self.default_base_url
        if base_url is None:
            raise VendorError(f"{self.vendor_name} needs base_url in its providers: entry")
        self._http = VendorHttp(
            vendor=self.vendor_name,
            base_url=base_url,
            auth=lambda key: self.auth_headers(self.token if key is None else key),
            timeout=settings.timeout,
            read_error=self.read_error,
            headers=self.extra_headers,
            ca_bundle=settings.ca_bundle,
            retry_timeout=settings.retry_for.total_seconds(),
            reauth=lambda: isinstance(self.token, FileSecret) and self.token.reload(),
            limiter=limiter_for(self.vendor_name, base_url, token, settings.rate_limit)
            if settings.rate_limit is not None
            else None,
        )

    def auth_headers(self, token: Secret) -> dict[str, str]:
        """The headers that authenticate a call with ``token`` (Bearer by default)."""
        return {"Authorization": f"Bearer {token.reveal()}"}

    def read_error(self, response: httpx.Response) -> str:
        """The vendor's error text from an error response."""
        return json_error_reader(*self.error_fields)(response)

    def close(self) -> None:
        self._http.close()
