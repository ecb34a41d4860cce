"""Warnings about transports an attacker on the network path could read or impersonate.

rotator accepts plain ``http://`` and unchecked TLS (a local trial, a sidecar
proxy), but says so when the configuration loads, naming the key: ``validate``
prints the warnings and the daemon logs them at start. Loopback addresses are
exempt: traffic to them never leaves the host.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_warning(url: str, carries: str) -> str | None:
    """A warning if ``url`` is ``http://`` to another host; ``carries`` says what would leak."""
    if not url.lower().startswith("http://") or is_loopback(url):
        return None
    return (
        f"uses plain http:// to a host that is not this machine: {carries} cross the network "
        "unencrypted and anyone on the path can read or change them; use https://"
    )


def unverified_tls_warning() -> str:
    return (
        "is false: Vault's certificate is not checked, so anyone on the network path can pose "
        "as Vault and receive the token and every new secret; give a CA bundle path instead"
    )
