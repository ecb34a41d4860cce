"""Vault KV v2 access (hvac): read, check-and-set writes, rotator's metadata, auth.

The store writes one field of a secret at a time and keeps the other fields
of that secret as they were. Every write is check-and-set against the version
read just before, so a concurrent writer is detected, never overwritten (the
engine stops and flags the policy).
Which vendor key a field holds is kept in the secret's ``custom_metadata``
under ``rotator.<field>.*`` keys; it never holds a secret value.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import hvac.utils
import requests

from rotator.config.credentials import VaultReference, read_credential_file
from rotator.config.model import AppRoleAuth, KubernetesAuth, TokenAuth, VaultConfig
from rotator.errors import (
    ConfigError,
    VaultAuthError,
    VaultCasConflict,
    VaultError,
    VaultNotFound,
    VaultPermissionDenied,
    VaultSealed,
    VaultUnreachable,
)
from rotator.secret import FileSecret, Secret, scrub
from rotator.vault_transport import PooledAdapter

# Renew when less than this share of the token's lifetime is left.
_RENEW_FRACTION = 1 / 3
_LOOKUP_INTERVAL = 60.0
#: What writing a secret takes: a check-and-set write of its data, then its custom_metadata.
_WRITE_NEEDS = {
    "data": frozenset({"read", "create", "update"}),
    "metadata": frozenset({"read", "update"}),
}


@dataclass(frozen=True)
class SecretVersion:
    """One version of a KV v2 secret; field values are ``Secret``s."""

    path: str
    version: int
    data: Mapping[str, Secret]
    custom_metadata: Mapping[str, str]

    def field(self, name: str) -> Secret | None:
        return self.data.get(name)


class _TokenFileAdapter(PooledAdapter):
    """Sends each request with the token file's current token; on 403 re-reads, retries once."""

    def __init__(self, file_token: FileSecret, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._file_token = file_token

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._take(self._file_token.reveal())
        try:
            return super().request(*args, **kwargs)
        except hvac.exceptions.Forbidden:
            self._file_token.reload()
            if not self._take(self._file_token.reveal()):
                raise
            return super().request(*args, **kwargs)

    def _take(self, token: str) -> bool:
        """Use ``token`` from now on; whether it differs from the one in use."""
        in_use: str | None = getattr(self, "token", None)
        if token == in_use:
            return False
        self.token = token
        return True


class VaultStore:
    """A logged-in KV v2 client for one mount."""

    def __init__(
        self,
        config: VaultConfig,
        token: Secret | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (monotonic seconds) times the token's renewal; a test runs it ahead."""
        self.config = config
        self._clock = clock
        self.mount = config.mount
        self._token = token
        self._client = hvac.Client(
            url=config.address,
            namespace=config.namespace,
            timeout=config.timeout,
            verify=config.verify_tls,
            allow_redirects=False,
            # A token from a file (Vault Agent's sink) is followed as the file changes.
            adapter=(lambda **kw: _TokenFileAdapter(token, **kw))
            if isinstance(token, FileSecret)
            else PooledAdapter,
        )
        self._renew_at = 0.0
        self._next_lookup = 0.0
        self._logged_in = False
        #: Secrets whose metadata the token may not patch (``update_metadata``), by mount/path.
        self._unpatchable: set[str] = set()

    def for_mount(self, mount: str) -> VaultStore:
        """This store's client and login, working on another KV v2 mount (a policy's own)."""
        if mount == self.mount:
            return self
        view = copy.copy(self)
        view.mount = mount
        return view

    # -- authentication -------------------------------------------------------

    def login(self) -> None:
        """Authenticate with the configured method; raise ``VaultAuthError`` if refused."""
        auth = self.config.auth
        try:
            if isinstance(auth, TokenAuth):
                if self._token is None:
                    raise VaultAuthError("no Vault token: set $VAULT_TOKEN or vault.auth.token")
                self._client.token = self._token.reveal()
            elif isinstance(auth, AppRoleAuth):
                secret_id = _read_file(auth.secret_id_file, "vault.auth.secret_id_file")
                self._client.auth.approle.login(
                    role_id=auth.role_id, secret_id=secret_id.reveal(), mount_point=auth.mount_point
                )
            elif isinstance(auth, KubernetesAuth):
                jwt = _read_file(auth.jwt_path, "vault.auth.jwt_path")
                self._client.auth.kubernetes.login(
                    role=auth.role, jwt=jwt.reveal(), mount_point=auth.mount_point
                )
            self._track_lifetime()
            self._logged_in = True
        except hvac.exceptions.VaultError as exc:
            if isinstance(exc, hvac.exceptions.VaultDown):
                raise VaultSealed(f"Vault at {self.config.address} is sealed; unseal it") from None
            raise VaultAuthError(
                f"Vault refused rotator's {auth.method} login at {self.config.address}: "
                f"{_describe(exc)}; check the credential and the auth role"
            ) from None
        except requests.RequestException as exc:
            raise _unreachable(self.config.address, exc) from None

    def _track_lifetime(self) -> None:
        info = self._client.auth.token.lookup_self()["data"]
        ttl = float(info.get("ttl") or 0)
        creation_ttl = float(info.get("creation_ttl") or ttl)
        now = self._clock()
        self._next_lookup = now + _LOOKUP_INTERVAL
        self._renew_at = now + ttl - creation_ttl * _RENEW_FRACTION if ttl else float("inf")

    def renew_if_needed(self) -> None:
        """Keep a long-running daemon's token alive: renew it, or log in again."""
        if not self._logged_in:
            self.login()  # which has just looked the token up: nothing else is due yet
            return
        now = self._clock()
        if now < self._renew_at and now < self._next_lookup:
            return
        with self._errors("token"):
            if now >= self._renew_at:
                try:
                    self._client.auth.token.renew_self()
                except hvac.exceptions.VaultError:
                    if isinstance(self.config.auth, TokenAuth):
                        raise
                    self.login()
                    return
            self._track_lifetime()

    # -- reads ----------------------------------------------------------------

    def read(self, path: str, version: int | None = None) -> SecretVersion | None:
        """The current (or a given) version of ``path``; ``None`` if it has none."""
        found = self._read_data(path, version)
        if found is None:
            return None
        number, data = found
        return SecretVersion(path, number, data, self.custom_metadata(path))

    def _read_data(self, path: str, version: int | None) -> tuple[int, dict[str, Secret]] | None:
        """A version's number and data, without the secret's metadata (one call fewer)."""
        with self._errors(path):
            try:
                response = self._client.secrets.kv.v2.read_secret_version(
                    path=path,
                    version=version,
                    mount_point=self.mount,
                    raise_on_deleted_version=True,
                )
            except hvac.exceptions.InvalidPath:
                if version is not None:
                    raise VaultNotFound(
                        f"version {version} of {self.mount}/{path} does not exist"
                    ) from None
                return None
        data = response["data"]
        values = {k: Secret(str(v)) for k, v in (data.get("data") or {}).items()}
        return int(data["metadata"]["version"]), values

    def _metadata(self, path: str) -> dict[str, Any]:
        """The secret's KV v2 metadata (versions, custom_metadata); empty if it does not exist."""
        with self._errors(path):
            try:
                response = self._client.secrets.kv.v2.read_secret_metadata(
                    path=path, mount_point=self.mount
                )
            except hvac.exceptions.InvalidPath:
                return {}
        return dict(response["data"])

    def custom_metadata(self, path: str) -> dict[str, str]:
        """The secret's ``custom_metadata`` (never secret values); empty if it has none."""
        return dict(self._metadata(path).get("custom_metadata") or {})

    def current_version(self, path: str) -> int:
        """The newest version number of ``path``, 0 when it was never written."""
        return int(self._metadata(path).get("current_version") or 0)

    def newest(self, path: str) -> tuple[int, Mapping[str, Secret] | None]:
        """The newest version number of ``path`` and its data: a write's base, in one call.

        The data is None when the newest version cannot be read (deleted, destroyed,
        never written): its number then comes from the metadata, as ``current_version``.
        """
        found = self._read_data(path, None)
        if found is None:
            return self.current_version(path), None
        return found

    def resolve(self, reference: VaultReference) -> Secret:
        """The value a ``vault:path#field`` credential reference points at."""
        current = self.read(reference.path)
        value = current.field(reference.field) if current else None
        if value is None:
            raise ConfigError(
                f"credential {reference} does not exist in Vault mount {self.mount}; "
                "write it first or fix the reference"
            )
        return value

    # -- writes ---------------------------------------------------------------

    def write_field(
        self,
        path: str,
        field: str,
        value: Secret,
        *,
        cas: int,
        keep: Mapping[str, Secret] | None = None,
    ) -> int:
        """Set ``field`` of ``path`` (other fields kept), only if ``cas`` is still current.

        ``cas`` is the version the caller read (0: the secret must not exist yet), and
        ``keep`` that version's data when the caller has it (``newest``): it is read
        otherwise. Returns the new version; raises ``VaultCasConflict`` if someone wrote
        since.
        """
        data: dict[str, str] = {}
        if cas:
            if keep is None:
                base = self._read_data(path, cas)
                keep = base[1] if base else {}
            data = {k: v.reveal() for k, v in keep.items()}
        data[field] = value.reveal()
        with self._errors(path):
            response = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=self.mount
            )
        return int(response["data"]["version"])

    def update_metadata(self, path: str, entries: Mapping[str, str]) -> None:
        """Merge ``entries`` into the secret's ``custom_metadata`` (values are not secrets).

        One call, a JSON merge patch Vault applies itself, where the token may ``patch``
        the metadata; otherwise (an older Vault, a policy without ``patch``) the metadata
        is read and written back merged, and that path is not patched again.
        """
        where = f"{self.mount}/{path}"
        refused = False
        if where not in self._unpatchable:
            with self._errors(path):
                try:
                    self._client.adapter.request(
                        "PATCH",
                        hvac.utils.format_url(
                            "/v1/{mount}/metadata/{path}", mount=self.mount, path=path
                        ),
                        json={"custom_metadata": dict(entries)},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                    return
                except (hvac.exceptions.Forbidden, hvac.exceptions.UnexpectedError):
                    refused = True
                except hvac.exceptions.InvalidPath:
                    pass  # no metadata yet: written in full below
        current = self.custom_metadata(path)
        with self._errors(path):
            self._client.secrets.kv.v2.update_metadata(
                path=path, custom_metadata={**current, **entries}, mount_point=self.mount
            )
        if refused:
            # Only now: a refusal the full write did not share was about ``patch`` itself.
            self._unpatchable.add(where)

    def capabilities(self, path: str) -> dict[str, set[str]]:
        """What rotator's token may do on ``path``'s data and metadata (no write is made)."""
        paths = [f"{self.mount}/data/{path}", f"{self.mount}/metadata/{path}"]
        with self._errors(path):
            response = self._client.adapter.post("/v1/sys/capabilities-self", json={"paths": paths})
        data = response.get("data", response) if isinstance(response, dict) else {}
        return {
            kind: set(data.get(full) or [])
            for kind, full in zip(("data", "metadata"), paths, strict=True)
        }

    def require_writable(self, *paths: str) -> None:
        """Raise unless the token may write each path's data and metadata (nothing is written).

        Asking Vault also proves it is unsealed and the token valid: the step that would
        change a key at the vendor runs only once its secret has somewhere to go.
        """
        for path in paths:
            caps = self.capabilities(path)
            missing = [
                f"{kind} {' and '.join(sorted(needed - caps[kind]))}"
                for kind, needed in _WRITE_NEEDS.items()
                if "root" not in caps[kind] and not needed <= caps[kind]
            ]
            if missing:
                raise VaultPermissionDenied(
                    f"rotator's Vault token may not write {self.mount}/{path} (it lacks "
                    f"{'; '.join(missing)}); nothing was changed at the vendor: grant the "
                    "capabilities in deploy/vault/rotator-policy.hcl, then retry"
                )

    def destroy(self, path: str) -> None:
        """Delete ``path`` with all its versions and metadata; already gone is fine."""
        with self._errors(path):
            self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self.mount
            )

    def is_reachable(self) -> bool:
        """Vault answers and still accepts rotator's token."""
        try:
            if not self._logged_in:
                self.login()
            return bool(self._client.is_authenticated())
        except (requests.RequestException, hvac.exceptions.VaultError, VaultError):
            return False

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        # Logging in on first use keeps runs that touch no secret (nothing due) off Vault.
        if not self._logged_in:
            self.login()
        where = f"{self.mount}/{path}"
        try:
            yield
        except VaultError:
            raise
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise VaultCasConflict(
                    f"{where} was written by someone else since rotator read it "
                    "(check-and-set failed); rotator never overwrites another writer: find "
                    "out who wrote the newest version and why"
                ) from None
            raise VaultError(f"Vault rejected the request on {where}: {_describe(exc)}") from None
        except hvac.exceptions.Forbidden as exc:
            raise VaultPermissionDenied(
                f"Vault denied access to {where} ({_describe(exc)}): the token is invalid or "
                "expired, or its policy lacks read/create/update there (see "
                "deploy/vault/rotator-policy.hcl)"
            ) from None
        except hvac.exceptions.VaultDown:
            raise VaultSealed(
                f"Vault at {self.config.address} is sealed; unseal it and retry"
            ) from None
        except hvac.exceptions.VaultError as exc:
            raise VaultError(f"Vault error on {where}: {_describe(exc)}") from None
        except requests.RequestException as exc:
            raise _unreachable(self.config.address, exc) from None


def _describe(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    text = "; ".join(str(e) for e in errors) if errors else str(exc)
    return scrub(text.strip()) or type(exc).__name__


def _unreachable(address: str | None, exc: Exception) -> VaultUnreachable:
    return VaultUnreachable(
        f"cannot reach Vault at {address} ({type(exc).__name__}); {_what_to_check(exc)}"
    )


def _what_to_check(exc: Exception) -> str:
    """What to look at for this failure: Vault being down is only one of the causes."""
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            "Vault's certificate was refused: check that vault.verify_tls (or $VAULT_CACERT, "
            "$VAULT_CAPATH) names the CA that signed it, and that vault.address uses a host "
            "name the certificate is issued for"
        )
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return (
            "the token (or vault.namespace) cannot be sent as an HTTP header: check its source "
            "for a line break or other control character"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return "Vault did not answer within vault.timeout: check that it is up and not overloaded"
    return "check vault.address and that Vault is running"


def _read_file(path: Path, key: str) -> Secret:
    try:
        return Secret(read_credential_file(path))
    except ValueError as exc:
        raise VaultAuthError(f"{key}: {exc}") from None


def open_vault(config: VaultConfig, token: Any) -> VaultStore:
    """A logged-in store; ``token`` is the loaded config's ``vault_token``."""
    store = VaultStore(config, token if isinstance(token, Secret) else None)
    store.login()
    return store
