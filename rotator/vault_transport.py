"""How rotator's hvac client talks HTTP to Vault: pooled urllib3 connections, settled once.

hvac sends each call through a requests ``Session``, whose per-call machinery (merging
session and environment settings, cookies, hooks, parsing the URL again, picking a
pool for it) cost rotator as much CPU as the rest of a Vault call. rotator talks to
one Vault address with settings fixed when its client is built, so ``PooledAdapter``
settles them then, and sends each call straight over a connection of one urllib3 pool:

- a redirect is never followed: it is a ``VaultError`` (the token would go along);
- TLS trusts the CA bundle or c_rehash'ed directory ``vault.verify_tls`` names (else
  ``$REQUESTS_CA_BUNDLE`` or requests' default bundle, as requests would), loaded once;
  ``false`` turns verification off;
- a proxy the environment names for Vault's address is used, as requests would;
- each call has ``vault.timeout`` to connect and again to read, and an answer is read
  up to ``MAX_ANSWER_BYTES`` only;
- the pool keeps one connection per thread at rotator's highest concurrency, and is
  safe to share between threads;
- a call that fails in transport raises the ``requests`` exception requests would have
  raised, so callers catch ``requests.RequestException`` as they did.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import hvac.adapters
import requests
import requests.adapters
import requests.exceptions
import requests.utils
import urllib3
import urllib3.exceptions

from rotator.errors import ConfigError, VaultError

#: Connections a pool keeps open for reuse: one per thread at the highest concurrency rotator
#: runs with (daemon.concurrency, --concurrency). Opened only as threads need them.
POOL_SIZE = 256
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: The most of an answer rotator reads. Vault refuses requests over 32 MiB by default, so
#: none of its answers to rotator (one secret, its metadata, a lookup) comes near this.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class VaultResponse:
    """An answer as hvac reads it (``requests.Response``'s names), its body read in full."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: urllib3.HTTPHeaderDict, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class PooledAdapter(hvac.adapters.JSONAdapter):  # type: ignore[misc]
    """hvac's JSON adapter, sending over one connection pool (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._open = _opener(self.base_uri, kwargs["verify"], kwargs["timeout"])
        parts = urlsplit(self.base_uri)
        self._origin, self._prefix = f"{parts.scheme}://{parts.netloc}", parts.path

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        raise_exception: bool = True,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        wrap_ttl: str | None = None,
    ) -> Any:
        """As ``JSONAdapter.request``: a 200's JSON as a dict, any other success as a response."""
        while "//" in url:  # Vault reads '//' as '/', and so does hvac
            url = url.replace("//", "/")
        path = "/" + self.urljoin(self._prefix, url).lstrip("/")
        headers = {**(headers or {}), **self._vault_headers(wrap_ttl)}
        body = None
        if json is not None:
            body = _json_body(json)
            headers.setdefault("Content-Type", "application/json")
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        response = self._send(method.upper(), f"{path}?{query}" if query else path, body, headers)
        if response.status_code in _REDIRECTS and "location" in response.headers:
            raise _redirect_refused(self._origin + path, response)
        if not response.ok and raise_exception and not self.ignore_exceptions:
            self._raise_for_error(method, self._origin + path, response)
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                pass
        return response

    def _vault_headers(self, wrap_ttl: str | None) -> dict[str, str]:
        headers = {"X-Vault-Request": "true"} if self.request_header else {}
        if self.token:
            headers["X-Vault-Token"] = self.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        return headers

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> VaultResponse:
        try:
            answer = self._open(
                method, path, body=body, headers=headers, redirect=False, preload_content=False
            )
            try:
                content = answer.read(MAX_ANSWER_BYTES + 1)
                if len(content) > MAX_ANSWER_BYTES:
                    answer.close()  # the rest is unread: the connection cannot carry another call
            except BaseException:
                answer.close()
                raise
            finally:
                answer.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _as_requests_error(exc) from exc
        except ValueError:
            # http.client's complaint about a header value quotes it: the value is the token.
            raise requests.exceptions.InvalidHeader(
                "a Vault request header (token or namespace) is not a valid HTTP header value"
            ) from None
        if len(content) > MAX_ANSWER_BYTES:
            raise VaultError(
                f"Vault at {self._origin} answered {method} {path.split('?')[0]} with more than "
                f"{MAX_ANSWER_BYTES >> 20} MiB, which rotator does not read: check that "
                "vault.address names Vault itself, not a proxy or another service"
            )
        return VaultResponse(answer.status, answer.headers, content)


def _json_body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def _redirect_refused(url: str, response: VaultResponse) -> VaultError:
    location = response.headers.get("location", "?").split("?")[0]
    return VaultError(
        f"Vault at {url} answered {response.status_code}, a redirect to {location}; rotator "
        "never follows one (its token and secrets would go along): set vault.address to "
        "Vault's own address"
    )


def _opener(base_uri: str, verify: bool | str, timeout: float) -> Callable[..., Any]:
    """``urlopen(method, path, ...)`` at ``base_uri``, with the proxy and CAs requests would use."""
    settled = requests.Session().merge_environment_settings(base_uri, {}, None, verify, None)
    pool_settings: dict[str, Any] = {
        "retries": False,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
    }
    if base_uri.lower().startswith("https:"):
        pool_settings |= _tls_settings(settled["verify"])
    proxy = requests.utils.select_proxy(base_uri, settled["proxies"])
    if proxy is None:
        return urllib3.connection_from_url(base_uri, maxsize=POOL_SIZE, **pool_settings).urlopen
    # Through a proxy, a plain-HTTP request names the whole URL: the proxy manager writes it so.
    manager = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE).proxy_manager_for(
        proxy, **pool_settings
    )
    parts = urlsplit(base_uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    return lambda method, path, **options: manager.urlopen(method, origin + path, **options)


def _tls_settings(verify: bool | str) -> dict[str, Any]:
    """The pool's TLS settings, its trusted CAs loaded once (not per new connection)."""
    if verify is False:
        return {"cert_reqs": "CERT_NONE", "ssl_context": _context(ssl.CERT_NONE)}
    where = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    context = _context(ssl.CERT_REQUIRED)
    try:
        if os.path.isdir(where):
            context.load_verify_locations(capath=where)
        else:
            context.load_verify_locations(cafile=where)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"vault.verify_tls: cannot load CA certificates from {where} "
            f"({getattr(exc, 'strerror', None) or exc}); point vault.verify_tls, $VAULT_CACERT "
            "or $VAULT_CAPATH at a PEM bundle or a c_rehash'ed directory of CA certificates"
        ) from None
    return {"cert_reqs": "CERT_REQUIRED", "ssl_context": context}


def _context(cert_reqs: ssl.VerifyMode) -> ssl.SSLContext:
    return urllib3.util.ssl_.create_urllib3_context(cert_reqs=cert_reqs)


def _as_requests_error(exc: Exception) -> requests.RequestException:
    """The exception requests raises for this urllib3 failure (with rotator's retry-less pool)."""
    errors = urllib3.exceptions
    if isinstance(exc, errors.ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, errors.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, errors.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, errors.ConnectTimeoutError) and not isinstance(
        exc, errors.NewConnectionError
    ):
        return requests.exceptions.ConnectTimeout(exc)
    return requests.exceptions.ConnectionError(exc)
