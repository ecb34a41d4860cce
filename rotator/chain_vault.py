"""The audit chain's HMAC key and its anchor, kept in Vault (KV v2) where the database owner
cannot reach them.

The key is field ``key`` (base64, 32 random bytes) of ``audit.key_path``; its KV version is
the key version events record, so ``rotator audit rotate-key`` writes a new version and old
events still verify with theirs. It is read from Vault once per process (and looked at
again every ``KEY_REFRESH`` seconds for a newer version), then held in memory only as
HMAC states (``MacKey``), never logged or shown: MACing a million events locally takes
seconds, a Vault call per event hours.
The anchor is field ``head`` of ``audit.anchor_path``, written check-and-set so two
sealers never move it back.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rotator.audit.chain import KEY_BYTES, AnchorPoint, MacKey
from rotator.config.loader import Config
from rotator.config.model import AuditConfig
from rotator.errors import AuditKeyError, RotatorError
from rotator.log import get_logger
from rotator.secret import Secret

if TYPE_CHECKING:
    from rotator.vault import VaultStore

#: Seconds a process uses its current key version before looking for a newer one.
KEY_REFRESH = 60.0
log = get_logger(__name__)


def rotate_key(vault: VaultStore, key_path: str) -> int:
    """Write a fresh random audit key as the next version at ``key_path``; its version."""
    value = Secret(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode())
    return vault.write_field(key_path, "key", value, cas=vault.current_version(key_path))


def chain_trust(
    config: Config, vault: Callable[[], VaultStore] | None = None
) -> VaultChainTrust | None:
    """The configured key and anchor, or None for an unkeyed chain.

    ``vault`` gives the client to use (the engine's, whose token it keeps alive); by
    default one is logged in on first use.
    """
    if config.audit.key_path is None:
        return None
    if vault is None:
        made: list[VaultStore] = []

        def vault() -> VaultStore:
            from rotator.vault import open_vault

            if not made:
                made.append(open_vault(config.vault, config.vault_token))
            return made[0]

    return VaultChainTrust(vault, config.audit)


class VaultChainTrust:
    """``ChainTrust`` on Vault KV v2 (see the module docstring)."""

    def __init__(
        self, vault: Callable[[], VaultStore], config: AuditConfig, *, refresh: float = KEY_REFRESH
    ) -> None:
        assert config.key_path is not None
        self._vault = vault
        self._refresh_after = refresh
        self.key_path = config.key_path
        self.anchor_path = config.anchor_path
        self._lock = threading.Lock()
        self._keys: dict[int, MacKey] = {}
        self._current = 0
        self._checked_at = 0.0

    @property
    def where(self) -> str:
        return f"Vault (audit.key_path {self.key_path}, audit.anchor_path {self.anchor_path})"

    def current_key(self) -> tuple[int, MacKey]:
        with self._lock:
            if not self._current or time.monotonic() - self._checked_at > self._refresh_after:
                self._refresh()
            return self._current, self._keys[self._current]

    def _refresh(self) -> None:
        try:
            newest = self._vault().current_version(self.key_path)
            if newest and newest not in self._keys:
                self._load(newest)
        except RotatorError as exc:
            if not self._current:
                raise AuditKeyError(
                    f"cannot read the audit key at {self.key_path} from Vault ({exc}); rotator "
                    "writes no audit event it cannot MAC"
                ) from None
            # Keep MACing with the version in hand; another look after the refresh interval.
            log.warning("audit_key_refresh_failed", error=str(exc))
            newest = self._current
        if not newest:
            raise AuditKeyError(
                f"there is no audit key at {self.key_path} in Vault: create it with "
                "'rotator audit rotate-key', or unset audit.key_path"
            )
        self._current, self._checked_at = newest, time.monotonic()

    def key(self, version: int) -> MacKey:
        with self._lock:
            if version not in self._keys:
                self._load(version)
            return self._keys[version]

    def _load(self, version: int) -> None:
        """Read ``version`` from Vault; only its HMAC states stay in memory."""
        found = self._vault().read(self.key_path, version)
        value = found.field("key") if found else None
        try:
            key = base64.b64decode(value.reveal(), validate=True) if value else b""
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < KEY_BYTES:
            raise AuditKeyError(
                f"version {version} of the audit key at {self.key_path} is not {KEY_BYTES} "
                "base64-encoded bytes in field 'key'; write one with 'rotator audit rotate-key'"
            )
        self._keys[version] = MacKey(key)

    def read_anchor(self) -> AnchorPoint | None:
        found = self._vault().read(self.anchor_path)
        head = found.field("head") if found else None
        if found is None or head is None:
            return None
        try:
            parsed = json.loads(head.reveal())
            return AnchorPoint(int(parsed["seq"]), str(parsed["hash"]), found.version)
        except (ValueError, KeyError, TypeError):
            raise AuditKeyError(
                f"the audit anchor at {self.anchor_path} is not one rotator wrote"
            ) from None

    def write_anchor(self, point: AnchorPoint, *, replacing: AnchorPoint | None) -> None:
        head = Secret(json.dumps({"seq": point.seq, "hash": point.hash}))
        cas = replacing.version if replacing is not None else 0
        self._vault().write_field(self.anchor_path, "head", head, cas=cas)
