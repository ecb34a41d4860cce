"""The trust store HTTPS clients check certificates with: a configured CA bundle, else one
default loaded once per process; none at all for a plain-http URL.

httpx loads its default CA store (certifi's bundle, or ``$SSL_CERT_FILE`` /
``$SSL_CERT_DIR``) into a new SSL context for every client it builds, tens of
milliseconds of CPU each time: every command builds a client per provider, and each
webhook notification one more. The default is built once, as httpx builds it, and
shared: an ``SSLContext`` is safe to use from many threads and clients. A client whose calls
all go to one ``http://`` URL (an emulator, a sidecar proxy) loads no trust store at all.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path


@functools.cache
def default_context() -> ssl.SSLContext:
    """httpx's default verifying context, loaded on first use."""
    import httpx

    return httpx.create_ssl_context()


def context_for(ca_bundle: Path | None) -> ssl.SSLContext:
    """A context trusting ``ca_bundle`` only, or the shared default when there is none."""
    if ca_bundle is None:
        return default_context()
    return ssl.create_default_context(cafile=ca_bundle)


def context_for_url(url: str, ca_bundle: Path | None) -> ssl.SSLContext:
    """The context for calls to ``url`` only: ``context_for`` when it is https, else one that
    trusts no certificate (a plain-http call makes no handshake; should one ever be tried,
    it fails closed instead of loading a trust store nothing uses)."""
    if url.startswith("https://"):
        return context_for(ca_bundle)
    return _trusting_nothing()


@functools.cache
def _trusting_nothing() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
