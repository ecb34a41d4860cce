"""The provider contract every vendor module implements (see docs/providers.md).

A provider speaks rotator's words (list, create, regenerate, revoke, verify)
and translates them into one vendor's API. It knows nothing of Vault, the
database or the rotation protocol: the engine calls it and keeps the state.
Each provider declares what its vendor allows (``Capabilities``) so that
configuration validation can refuse a policy that asks for more before any
call is made, and says, for each operation, which requests it sends
(``plan_*``), so that ``plan`` and ``--dry-run`` show the run's own requests.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, FilePath, field_validator

from rotator.config.credentials import Credential
from rotator.config.duration_field import Duration
from rotator.durations import format_duration
from rotator.errors import VendorError
from rotator.providers.ratelimit import RateLimit
from rotator.providers.request import PlannedCall
from rotator.secret import Secret

# Re-exported: vendor modules and plugins import the strategy with the rest of the contract.
from rotator.vocabulary import Strategy as Strategy


@dataclass(frozen=True)
class Capabilities:
    """What a vendor lets rotator do; checked when the configuration loads."""

    strategies: frozenset[Strategy]
    #: The provider can prove a new key is usable (see ``Provider.verify_key``).
    can_verify: bool
    #: What ``verify_key`` proves, in words shown by ``plan``.
    verification: str = "none"
    #: The vendor accepts a secret chosen by the caller, so rotator can store it first.
    caller_chooses_secret: bool = False
    #: How long a revoked key may still be accepted (vendor-side caches).
    revocation_lag: timedelta = timedelta(0)
    #: Longest key name the vendor accepts (each vendor module says where its number comes from).
    max_name_length: int = 64
    #: ``list_keys`` tells when each key was last used (``VendorKey.last_used_at``).
    reports_usage: bool = False


#: A provider's ``retry_for`` may not be longer: the policy's lock is held while a call retries.
MAX_RETRY_FOR = timedelta(minutes=10)


class ProviderSettings(BaseModel):
    """A ``providers:`` entry. Vendor modules subclass it to add their own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    type: str
    token: Credential
    base_url: str | None = None
    timeout: float = Field(default=30.0, gt=0, description="seconds for each HTTP call")
    #: How long a failed call (429, and for idempotent calls 5xx and network errors) is
    #: retried within a run; ``0s``: one try. The policy's lock is held meanwhile.
    retry_for: Duration = timedelta(seconds=60)
    #: Calls to this vendor account are paced to this rate; ``null`` turns pacing off.
    rate_limit: RateLimit | None = None
    ca_bundle: FilePath | None = Field(
        default=None, description="CA certificates (PEM) to trust for base_url, e.g. a private CA"
    )

    @field_validator("retry_for")
    @classmethod
    def _retry_for_bounded(cls, value: timedelta) -> timedelta:
        if value > MAX_RETRY_FOR:
            raise ValueError(
                f"must be at most {format_duration(MAX_RETRY_FOR)}: the policy's lock is held "
                "while a call is retried; a longer outage is retried by the rotation's own backoff"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class KeySelector(BaseModel):
    """A policy's ``key:`` mapping: which key slot at the vendor it rotates.

    Every vendor's selector accepts ``name_prefix``: keys rotator creates are
    named ``<name_prefix>-<8 hex of the rotation id>`` (default prefix
    ``rotator-<policy>``), which is how orphans are recognised later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name_prefix: str | None = Field(
        default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )

    #: Fields that pick a key inside the slot or shape new keys, rather than name the slot.
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset({"name_prefix"})

    def slot(self) -> tuple[tuple[str, str], ...]:
        """What names the key slot (an agent, a user, an account): policies with equal slots
        on one provider account see each other's keys."""
        return tuple(
            sorted((k, repr(v)) for k, v in self.model_dump().items() if k not in self.NOT_SLOT)
        )


@dataclass(frozen=True)
class VendorKey:
    """A key as the vendor lists it: identity and usage, never the secret."""

    key_id: str
    name: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    #: False once the vendor has deactivated the key but not yet deleted it.
    active: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MintedKey:
    """A key the vendor just issued, with its secret (shown once by most vendors)."""

    key: VendorKey
    secret: Secret


#: "-" and 8 hex digits of the rotation id end every key name rotator gives.
_TAG_LENGTH = 9

SettingsT = TypeVar("SettingsT", bound=ProviderSettings)
SelectorT = TypeVar("SelectorT", bound=KeySelector)


class Provider(ABC, Generic[SettingsT, SelectorT]):
    """One vendor account's key API, in rotator's words.

    Contract (docs/providers.md): every method is safe to call again after a
    crash; ``revoke_key`` of a key that is already gone succeeds; nothing here
    logs or raises a secret value.
    """

    type_name: ClassVar[str]
    settings_model: ClassVar[type[ProviderSettings]]
    selector_model: ClassVar[type[KeySelector]]
    capabilities: ClassVar[Capabilities]
    #: The selector field naming the key to rotate first, if the vendor's selector has one.
    key_id_field: ClassVar[str | None] = None

    def __init__(self, settings: SettingsT, token: Secret) -> None:
        self.settings = settings
        self.token = token

    @abstractmethod
    def list_keys(self, selector: SelectorT) -> list[VendorKey]:
        """Every key in the selector's slot (all pages), without secrets."""

    @abstractmethod
    def create_key(
        self, selector: SelectorT, name: str, secret: Secret | None, *, replacing: str | None
    ) -> MintedKey:
        """Issue a new key named ``name``.

        ``secret`` is set only when the vendor lets us choose it; ``replacing`` is
        the id of the key this one replaces, whose settings (scopes, IP allow-lists)
        the new key should keep where the vendor has such settings.
        """

    def regenerate_key(self, selector: SelectorT, key_id: str) -> MintedKey:
        """Replace the secret of ``key_id`` in place; the old secret stops working."""
        raise NotImplementedError(f"{self.type_name} cannot regenerate keys in place")

    @abstractmethod
    def revoke_key(self, selector: SelectorT, key_id: str) -> None:
        """Make ``key_id`` unusable and delete it; a key that is already gone is success."""

    def find_key(self, selector: SelectorT, key_id: str) -> VendorKey | None:
        """``key_id`` as the vendor lists it now, inactive or not; ``None`` when it is gone."""
        return next((key for key in self.list_keys(selector) if key.key_id == key_id), None)

    def revoke_step(
        self,
        selector: SelectorT,
        key_id: str,
        call: Callable[[], object],
        *,
        done_when_inactive: bool = False,
    ) -> None:
        """Run one step of a revoke; when the vendor refuses it, ask the slot whether it is done.

        A repeated revoke (after a crash, or a lost answer) meets vendors that answer
        404, 409 or 400 for a key already gone or already deactivated. Whatever the
        status, a key that is no longer listed (or, for a deactivate step, is listed
        inactive) means the step is done; otherwise the vendor's error stands.
        """
        try:
            call()
        except VendorError as refused:
            try:
                key = self.find_key(selector, key_id)
            except VendorError:
                raise refused from None
            if key is None or (done_when_inactive and not key.active):
                return
            raise

    def verify_key(self, selector: SelectorT, minted: MintedKey) -> bool:
        """Whether the new key is usable, as far as the vendor lets us check."""
        raise NotImplementedError(f"{self.type_name} offers no way to verify a key")

    def prepare_grace(self, selector: SelectorT, old_key_id: str, grace_ends: datetime) -> None:
        """Called once the new key is in Vault; vendors with key expiry enforce the overlap."""

    def cancel_grace(self, selector: SelectorT, old_key_id: str) -> None:
        """Undo ``prepare_grace``: the old key is current again (``rotator rollback``)."""

    # -- what each operation sends, for plan and --dry-run ----------------------
    # Each returns, in order, the requests its operation builds when all goes well: the
    # very objects it hands to the HTTP layer, built by the same code.

    @abstractmethod
    def plan_list(self, selector: SelectorT) -> list[PlannedCall]:
        """The requests ``list_keys`` sends."""

    def plan_find_key(self, selector: SelectorT, key_id: str) -> list[PlannedCall]:
        """The requests ``find_key`` sends."""
        return self.plan_list(selector)

    @abstractmethod
    def plan_create(
        self, selector: SelectorT, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        """The requests ``create_key`` sends (a chosen secret shows masked)."""

    def plan_regenerate(self, selector: SelectorT, key_id: str) -> list[PlannedCall]:
        """The requests ``regenerate_key`` sends."""
        raise NotImplementedError(f"{self.type_name} cannot regenerate keys in place")

    @abstractmethod
    def plan_revoke(self, selector: SelectorT, key_id: str) -> list[PlannedCall]:
        """The requests ``revoke_key`` sends to a key that is still there."""

    def plan_verify(self, selector: SelectorT, key_id: str) -> list[PlannedCall]:
        """The requests ``verify_key`` sends for the new key ``key_id``."""
        raise NotImplementedError(f"{self.type_name} offers no way to verify a key")

    def plan_prepare_grace(
        self, selector: SelectorT, old_key_id: str, grace: timedelta
    ) -> list[PlannedCall]:
        """The requests ``prepare_grace`` sends for a grace period of ``grace``."""
        return []

    def plan_cancel_grace(self, selector: SelectorT, old_key_id: str) -> list[PlannedCall]:
        """The requests ``cancel_grace`` sends."""
        return []

    def plan_preflight(
        self, selector: SelectorT, key_id: str | None, *, self_rotating: bool
    ) -> list[PlannedCall]:
        """The requests ``preflight`` sends."""
        return []

    def configured_key_id(self, selector: SelectorT) -> str | None:
        """The key id the policy names explicitly, if its selector has one."""
        return self.selector_key_id(selector)

    @classmethod
    def selector_key_id(cls, selector: KeySelector) -> str | None:
        if cls.key_id_field is None:
            return None
        value = getattr(selector, cls.key_id_field)
        return str(value) if value is not None else None

    @classmethod
    def key_prefix(cls, selector: KeySelector, policy: str) -> str:
        """The start of every key name of ``policy``, cut to leave room for the rotation tag."""
        prefix = selector.name_prefix or f"rotator-{policy}"
        return prefix[: cls.capabilities.max_name_length - _TAG_LENGTH]

    def key_name(self, selector: SelectorT, policy: str, rotation_id: str) -> str:
        """The name of a key rotator creates, recognisable later by ``is_ours``."""
        return f"{self.key_prefix(selector, policy)}-{rotation_id[:8]}"

    def is_ours(self, selector: SelectorT, policy: str, key: VendorKey) -> bool:
        """Whether ``key`` carries the name ``key_name`` gives this policy's keys."""
        if not key.name or len(key.name) < 9:
            return False
        tag = key.name[-8:]
        hex_tag = all(c in "0123456789abcdef" for c in tag)
        return hex_tag and key.name == self.key_name(selector, policy, tag)

    def use_token(self, token: Secret) -> None:
        """Authenticate with ``token`` from now on: the policy rotated rotator's own key."""
        self.token = token

    def preflight(self, selector: SelectorT, key_id: str | None, *, self_rotating: bool) -> None:
        """Refuse, before any change, a rotation this vendor cannot do safely."""

    @classmethod
    def policy_warnings(
        cls, selector: KeySelector, strategy: Strategy, grace_period: timedelta
    ) -> list[str]:
        """Warnings shown by ``validate`` and ``plan`` for a policy of this provider."""
        warnings = []
        if strategy is Strategy.REGENERATE:
            warnings.append(
                "regenerate replaces the secret in place: the old key stops working at once, "
                "so consumers fail until they read the new one from Vault (no overlap)"
            )
            if cls.selector_key_id(selector) is None:
                field_hint = f"set key.{cls.key_id_field} or " if cls.key_id_field else ""
                warnings.append(
                    "regenerate needs the id of the key to regenerate and this policy names "
                    f"none: {field_hint}run 'rotator adopt POLICY --key-id ID' before the "
                    "first rotation"
                )
        lag = cls.capabilities.revocation_lag
        if strategy is Strategy.CREATE_THEN_DELETE and grace_period < lag:
            warnings.append(
                f"grace_period is shorter than the {int(lag.total_seconds())}s the vendor may "
                "keep accepting a revoked key; consumers may see the old key work after revoke"
            )
        return warnings

    @staticmethod
    def generate_secret() -> Secret:
        """A fresh random secret for vendors that let the caller choose it."""
        return Secret(secrets.token_hex(32))

    def close(self) -> None:
        """Release connections; the default holds none."""
