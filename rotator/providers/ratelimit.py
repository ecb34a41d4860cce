"""Proactive pacing of vendor calls: one limiter per vendor account, shared by every thread.

Waiting for 429s is how a client learns it was too fast; a vendor that also
counts an hourly budget (DigitalOcean) punishes that lesson for up to an
hour. So each vendor account gets a token bucket sized from the provider's
``rate_limit: {requests: N, per: DURATION}`` (a vendor's documented limit by
default), and every call takes a token first. The bucket is looked up by
vendor, base URL and a keyed digest of the token (the key is random per
process and the digest never leaves memory), so worker threads, and provider
objects rebuilt after a configuration reload, draw from the same bucket.

Hand-written rather than a library: the libraries on offer either count
without blocking (``limits``) or bring storage back-ends rotator has no use
for; a blocking in-memory bucket is a few lines.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from rotator.config.duration_field import Duration
from rotator.secret import Secret


class RateLimit(BaseModel):
    """A provider's ``rate_limit:``: at most ``requests`` calls every ``per``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(gt=0)
    per: Duration

    def interval(self) -> float:
        """Seconds between calls at the steady rate."""
        return self.per.total_seconds() / self.requests


class Limiter:
    """A token bucket: ``requests`` calls at once, then one every ``per / requests``."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(limit.requests)
        self._updated = clock()

    def acquire(self) -> float:
        """Take one call's token, waiting for it if need be; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            rate = 1.0 / self.limit.interval()
            self._tokens = min(
                float(self.limit.requests), self._tokens + (now - self._updated) * rate
            )
            self._updated = now
            # Taking the token before sleeping reserves this caller's place in line, so
            # threads waiting at once are spaced out rather than woken together.
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / rate
        if wait > 0:
            self._sleep(wait)
        return wait


_limiters: dict[tuple[str, str, str, RateLimit], Limiter] = {}
_registry_lock = threading.Lock()
_ACCOUNT_KEY = os.urandom(32)


def limiter_for(vendor: str, base_url: str, token: Secret, limit: RateLimit) -> Limiter:
    """The one limiter of this vendor account (same vendor, URL and token) at this limit."""
    account = hmac.new(_ACCOUNT_KEY, token.reveal().encode(), hashlib.sha256).hexdigest()
    key = (vendor, base_url, account, limit)
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = Limiter(limit)
        return limiter
