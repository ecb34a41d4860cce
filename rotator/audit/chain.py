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
import hmac
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


def event_mac(
    key: bytes,
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
    """A keyed event's MAC over its content, JSON columns as the text they are stored as."""
    fields = (version, nonce, at.astimezone(UTC).isoformat(), policy, rotation_id, step)
    content = json.dumps((*fields, outcome, actor, details, changes), separators=(",", ":"))
    return hmac.digest(key, content.encode(), "sha256").hex()


def link_mac(key: bytes, prev_hash: str, seq: int, mac: str) -> str:
    """A keyed event's chain hash: binds its MAC to its position and its predecessor."""
    return hmac.digest(key, f"{prev_hash}\n{seq}\n{mac}".encode(), "sha256").hex()


@dataclass(frozen=True)
class AnchorPoint:
    """The newest sealed position and its hash, as recorded outside the database."""

    seq: int
    hash: str
    #: The anchor's own version where it is kept (for check-and-set); 0 when not yet written.
    version: int = 0


class ChainTrust(Protocol):
    """The audit key's versions and the chain's anchor, kept where the database owner cannot."""

    def current_key(self) -> tuple[int, bytes]:
        """The newest key version and its key, for new events."""

    def key(self, version: int) -> bytes:
        """The key of ``version`` (events sealed before a rotation of the key)."""

    def read_anchor(self) -> AnchorPoint | None:
        """The recorded anchor, or None if none was ever written."""

    def write_anchor(self, point: AnchorPoint, *, replacing: AnchorPoint | None) -> None:
        """Advance the anchor to ``point`` from ``replacing`` as read (check-and-set)."""

    @property
    def where(self) -> str:
        """Where the key and anchor live, for messages."""
