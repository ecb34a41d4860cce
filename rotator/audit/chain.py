"""What the audit chain's MACs and hashes cover, and where its key and anchor come from.

Two generations of events share one chain, told apart by ``key_version``:

- version 0, unkeyed (before an audit key was configured, or without one): ``hash`` is
  sha256 over the previous hash and the event's content. Anyone who can write the
  database can recompute it, so it only catches accidents.
- version N >= 1, keyed with version N of the audit key (HMAC-SHA256, key kept in Vault):
  the writer MACs the event's content with a random nonce when it inserts it (``mac``),
  and the sealer chains it: ``hash`` = HMAC over the previous hash, the position and
  ``mac``. Without the key nobody can write an event that verifies, or re-chain edited
  ones; the nonce makes every MAC unique, so a copied event is caught as well.

The key and the anchor (the newest sealed position and hash, written outside the
database) are provided by a ``ChainTrust``; ``rotator.chain_vault`` keeps both in Vault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

#: Bytes of a freshly generated audit key.
KEY_BYTES = 32


def canonical_json(value: Any) -> str:
    """The one serialisation of JSON columns: the text stored is the text MACed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def event_content(values: Mapping[str, Any]) -> str:
    """An unkeyed event's content, canonically serialised: what its chain hash covers."""
    return json.dumps(
        {
            "at": values["at"].astimezone(UTC).isoformat(),
            "policy": values["policy"],
            "rotation_id": values["rotation_id"],
            "step": values["step"],
            "outcome": values["outcome"],
            "actor": values["actor"],
            "details": values["details"],
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def event_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """The chain hash of an unkeyed event: sha256 of ``prev_hash``, a newline, its content."""
    return hashlib.sha256(f"{prev_hash}\n{event_content(values)}".encode()).hexdigest()


class MacKey:
    """HMAC-SHA256 (RFC 2104) with one key, its padded hash states computed once.

    ``hmac.digest`` derives them again for every message; verifying a million events
    MACs two million messages, and starting from copies of the two states halves that
    cost. Tests hold it equal to the standard library's ``hmac``. Only hash states are
    kept, never the key itself.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return "MacKey(...)"


def event_mac(
    key: MacKey,
    version: int,
    nonce: str,
    at: datetime,
    policy: str,
    rotation_id: str | None,
    step: str,
    outcome: str,
    actor: str,
    details: str,
    changes: str | None,
) -> str:
    """A keyed event's MAC over its content, JSON columns as the text they are stored as.

    ``at`` is in UTC (as the store reads and writes it). Free-text fields are length-
    prefixed, so no two contents give one message; the nonce, the id and the JSON texts
    hold no newline. A JSON dump of the fields would do the same at five times the cost,
    which ``audit verify`` pays once per event.
    """
    message = (
        f"{version}\n{nonce}\n{at.isoformat()}\n{len(policy)}:{policy}\n{rotation_id or ''}\n"
        f"{len(step)}:{step}\n{len(outcome)}:{outcome}\n{len(actor)}:{actor}\n{details}\n"
        f"{changes or ''}"
    )
    return key.hexdigest(message.encode())


def link_mac(key: MacKey, prev_hash: str, seq: int, mac: str) -> str:
    """A keyed event's chain hash: binds its MAC to its position and its predecessor."""
    return key.hexdigest(f"{prev_hash}\n{seq}\n{mac}".encode())


@dataclass(frozen=True)
class AnchorPoint:
    """The newest sealed position and its hash, as recorded outside the database."""

    seq: int
    hash: str
    #: The anchor's own version where it is kept (for check-and-set); 0 when not yet written.
    version: int = 0


class ChainTrust(Protocol):
    """The audit key's versions and the chain's anchor, kept where the database owner cannot."""

    def current_key(self) -> tuple[int, MacKey]:
        """The newest key version and its key, for new events."""

    def key(self, version: int) -> MacKey:
        """The key of ``version`` (events sealed before a rotation of the key)."""

    def read_anchor(self) -> AnchorPoint | None:
        """The recorded anchor, or None if none was ever written."""

    def write_anchor(self, point: AnchorPoint, *, replacing: AnchorPoint | None) -> None:
        """Advance the anchor to ``point`` from ``replacing`` as read (check-and-set)."""

    @property
    def where(self) -> str:
        """Where the key and anchor live, for messages."""
