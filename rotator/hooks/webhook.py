"""The ``notify`` hook: POST what changed (policy, key id, Vault mount, path and version).

The body names where the new secret is, never the secret itself: a consumer
that wants it reads Vault with its own credentials.
"""

from __future__ import annotations

from typing import Any

import httpx

from rotator.errors import HookFailed
from rotator.secret import Secret, scrub
from rotator.tls import default_context


def send(url: Secret, body: dict[str, Any], *, timeout: float) -> None:
    """POST ``body`` to ``url``; raise ``HookFailed`` on a transport error or a non-2xx answer."""
    try:
        response = httpx.post(url.reveal(), json=body, timeout=timeout, verify=default_context())
    except httpx.HTTPError as exc:
        raise HookFailed(f"notify hook: {scrub(f'{type(exc).__name__}: {exc}')}") from None
    if not response.is_success:
        raise HookFailed(f"notify hook: the receiver answered HTTP {response.status_code}")
