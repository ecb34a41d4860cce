"""The trust store HTTPS clients check certificates with: a configured CA bundle, else one
default loaded once per process.

httpx loads its default CA store (certifi's bundle, or ``$SSL_CERT_FILE`` /
``$SSL_CERT_DIR``) into a new SSL context for every client it builds, tens of
milliseconds of CPU each time: every command builds a client per provider, and each
webhook notification one more. The default is built once, as httpx builds it, and
shared: an ``SSLContext`` is safe to use from many threads and clients.
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
