"""The HTTP plumbing every vendor client shares: timeouts, retries, error mapping.

Each vendor module supplies how to authenticate and how to read its error
body; this module turns status codes into rotator's ``VendorError`` family and
retries what is safe to retry: 429 (honouring ``Retry-After``, or else the
``RateLimit-Reset`` of an exhausted hourly budget, when either is within the
retry cap) always, 5xx and network failures only for idempotent calls,
because a repeated ``POST`` could mint a second key. Every call first takes a
token from the account's limiter (``ratelimit.py``) when one is configured.

httpx, stamina and the metrics registry are imported when a client is made or
a call fails, not with this module: validating a configuration imports every
provider module it names, and a CronJob's ``rotate due`` that finds nothing
due never makes a vendor call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

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
from rotator.secret import FileSecret, Secret, scrub

if TYPE_CHECKING:
    import httpx

ErrorReader = Callable[["httpx.Response"], str]
_MAX_MESSAGE = 300
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "PATCH"})


class VendorHttp:
    """An ``httpx.Client`` bound to one vendor account, speaking in ``VendorError``s."""

    def __init__(
        self,
        *,
        vendor: str,
        base_url: str,
        auth: Callable[[], Mapping[str, str]],
        timeout: float,
        headers: Mapping[str, str] | None = None,
        read_error: ErrorReader,
        attempts: int = 5,
        retry_timeout: float = 60.0,
        limiter: Limiter | None = None,
        reauth: Callable[[], bool] | None = None,
    ) -> None:
        import httpx

        self.vendor = vendor
        self._limiter = limiter
        self._auth = auth
        #: Called once on a 401/403: whether a fresh credential is now in use, worth one retry.
        self._reauth = reauth
        self._read_error = read_error
        self._attempts = attempts
        self._retry_timeout = retry_timeout
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one call, retrying what is safe; raise a ``VendorError`` on failure."""
        import stamina

        safe_to_repeat = method in _IDEMPOTENT if idempotent is None else idempotent
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
                if exc.retry_after is None:
                    return True
                # A wait past the cap is the engine's to schedule (``retry_at``), not ours.
                return exc.retry_after if exc.retry_after <= self._retry_timeout else False
            if isinstance(exc, VendorUnavailable):
                return safe_to_repeat or exc.never_sent
            return False

        for attempt in stamina.retry_context(
            on=backoff, attempts=self._attempts, timeout=self._retry_timeout, wait_max=30.0
        ):
            with attempt:
                return self._send(method, path, json=json, params=params, headers=headers)
        raise AssertionError("unreachable: retry_context either returns or raises")

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        import httpx

        where = f"{self.vendor} {method} {path}"
        if self._limiter is not None:
            self._limiter.acquire()
        try:
            response = self._client.request(
                method, path, json=json, params=params, headers={**self._auth(), **(headers or {})}
            )
        except httpx.TransportError as exc:
            _count_error(self.vendor, "network")
            raise _unavailable(where, exc) from None
        if response.is_success:
            return response
        raise self._error(where, response)

    def _error(self, where: str, response: httpx.Response) -> VendorError:
        status = response.status_code
        _count_error(self.vendor, str(status))
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
            return _rate_limited(message, response)
        if status >= 500:
            return VendorUnavailable(message, status=status)
        return VendorError(message, status=status)

    def close(self) -> None:
        self._client.close()


def _count_error(vendor: str, kind: str) -> None:
    from rotator.metrics import VENDOR_ERRORS

    VENDOR_ERRORS.labels(vendor, kind).inc()


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


def _rate_limited(message: str, response: httpx.Response) -> VendorRateLimited:
    """A 429: a burst limit says ``Retry-After``; an exhausted hourly budget its reset time."""
    retry_after = _retry_after(response)
    if retry_after is not None:
        return VendorRateLimited(message, retry_after=retry_after)
    reset = _number(response.headers.get("ratelimit-reset"))
    if reset is None or reset <= 0:
        return VendorRateLimited(message)
    retry_at = datetime.fromtimestamp(reset, UTC)
    return VendorRateLimited(
        f"{message}; the hourly request budget is spent until {retry_at:%Y-%m-%d %H:%M:%S} UTC",
        retry_after=max(0.0, reset - time.time()),
        retry_at=retry_at,
    )


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = _number(response.headers.get("retry-after"))
    return None if value is None else max(0.0, value)


def json_error_reader(*fields: str) -> ErrorReader:
    """A reader that joins the named fields of a JSON error body (falls back to the text)."""

    def read(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip() or response.reason_phrase
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
            auth=lambda: self.auth_headers(self.token),
            timeout=settings.timeout,
            read_error=self.read_error,
            headers=self.extra_headers,
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
