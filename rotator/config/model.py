"""The shape of ``rotator.yaml``: pydantic models for every key a user may write.

These models check the envelope (known keys, types, durations, cron
expressions). What depends on a vendor (its ``providers:`` settings and a
policy's ``key:`` selector) is checked afterwards by ``loader`` against the
provider class the ``type`` names.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    field_validator,
    model_validator,
)

from rotator.config.consumers import ConsumersConfig, HooksConfig, KubernetesConfig
from rotator.config.duration_field import Duration
from rotator.config.paths import check_vault_path
from rotator.config.usage import RevokeWhenUnused
from rotator.vocabulary import Strategy

DEFAULT_DATABASE_URL = "sqlite:///rotator.db"
KUBERNETES_JWT_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    url: str = Field(
        default_factory=lambda: os.environ.get("ROTATOR_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    #: A credential reference (``${ENV}`` or ``file:``) for the password of ``url``'s user.
    password: str | None = None


class TokenAuth(_Model):
    method: Literal["token"] = "token"
    token: str | None = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenAuth:
        if self.token and self.token_file:
            raise ValueError("set either token or token_file, not both")
        return self


class AppRoleAuth(_Model):
    method: Literal["approle"]
    role_id: str
    secret_id_file: Path
    mount_point: str = "approle"


class KubernetesAuth(_Model):
    method: Literal["kubernetes"]
    role: str
    jwt_path: Path = KUBERNETES_JWT_PATH
    mount_point: str = "kubernetes"


VaultAuth = Annotated[TokenAuth | AppRoleAuth | KubernetesAuth, Field(discriminator="method")]


def _vault_ca_from_env() -> bool | str:
    """``$VAULT_CACERT``, else ``$VAULT_CAPATH``, else the system CAs, as the Vault CLI does."""
    return os.environ.get("VAULT_CACERT") or os.environ.get("VAULT_CAPATH") or True


class VaultConfig(_Model):
    address: str | None = Field(default_factory=lambda: os.environ.get("VAULT_ADDR"))
    mount: str = "secret"
    namespace: str | None = Field(default_factory=lambda: os.environ.get("VAULT_NAMESPACE") or None)
    auth: VaultAuth = Field(default_factory=lambda: {"method": "token"}, validate_default=True)
    timeout: float = Field(default=10.0, gt=0)
    #: false, or a CA bundle file or a directory of CA certificates (c_rehash'ed).
    verify_tls: bool | str = Field(default_factory=_vault_ca_from_env)
    #: Where a secret rotator generates itself waits (in this mount) until the vendor has it.
    staging_prefix: VaultPath = "rotator/staging"
    #: How long a regenerated secret, whose predecessor is already dead, is held in memory
    #: while its Vault write is retried before rotator gives up on it.
    write_retry_for: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _address_known(self) -> VaultConfig:
        if not self.address:
            raise ValueError("vault.address is not set and $VAULT_ADDR is empty; set one of them")
        if not self.address.startswith(("http://", "https://")):
            raise ValueError("vault.address must start with http:// or https://")
        return self


def _timezone(value: object) -> object:
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone name; use one such as 'Europe/Berlin', "
            "'America/New_York' or 'UTC'"
        ) from None
    return value


class AuditConfig(_Model):
    """Where the audit chain's key and anchor live in Vault (``vault.mount``, KV v2)."""

    #: The HMAC key's path (field ``key``, written by ``rotator audit rotate-key``). Unset,
    #: the chain is unkeyed sha256, which only catches accidents (README: Security model).
    key_path: str | None = Field(default=None, min_length=1)
    #: Where the newest sealed position and hash are recorded after each sealing pass.
    anchor_path: str = Field(default="rotator/audit/anchor", min_length=1)


class ScheduleConfig(_Model):
    cron: str | None = None
    every: Duration | None = None
    window: Duration | None = None
    jitter: Duration | None = None
    #: The zone a cron expression's hours and days are read in (UTC when not set).
    timezone: Annotated[str | None, BeforeValidator(_timezone)] = None

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.cron is None) == (self.every is None):
            raise ValueError("set exactly one of 'cron' (e.g. '0 3 * * MON') or 'every' ('30d')")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(
                    f"cron {self.cron!r} is not a valid 5-field cron expression "
                    "(minute hour day-of-month month day-of-week), e.g. '0 3 * * MON'"
                )
        if self.timezone is not None and self.cron is None:
            raise ValueError("'timezone' applies only with cron; 'every' counts elapsed time")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("'every' must be longer than zero")
        if self.window is not None and self.window <= timedelta(0):
            raise ValueError("'window' must be longer than zero")
        if self.window is not None and self.jitter is not None and self.jitter >= self.window:
            raise ValueError("'jitter' must be shorter than 'window', or rotations would miss it")
        return self


VaultPath = Annotated[str, Field(min_length=1), AfterValidator(check_vault_path)]


class VaultTarget(_Model):
    path: VaultPath
    field: str = Field(default="api_key", min_length=1)
    #: The KV v2 mount; None means the global ``vault.mount`` (the loader fills it in).
    mount: VaultPath | None = None

    @property
    def normalized_path(self) -> str:
        return self.path.strip("/")


#: Shared by every policy that sets no ``consumers:`` (the model is frozen and hashable, so
#: pydantic does not copy it): one instance per policy cost about 4 MB at 10,000 policies.
_NO_CONSUMERS = ConsumersConfig()
#: Shared likewise by policies without ``hooks:``. Its empty lists make it unhashable, which
#: pydantic would copy as a default; a factory's result is not copied, and nothing mutates it.
_NO_HOOKS = HooksConfig()


class PolicyConfig(_Model):
    provider: str
    key: dict[str, Any] = Field(default_factory=dict)
    strategy: Strategy = Strategy.CREATE_THEN_DELETE
    schedule: ScheduleConfig
    grace_period: Duration = timedelta(hours=24)
    vault: VaultTarget
    #: False holds the policy for good: no rotation starts (``rotator pause`` is the temporary one).
    enabled: bool = True
    hooks: HooksConfig = Field(default_factory=lambda: _NO_HOOKS)
    consumers: ConsumersConfig = _NO_CONSUMERS
    #: Off by default: the old key is revoked when grace ends, used or not.
    revoke_when_unused: RevokeWhenUnused | None = None


class DaemonConfig(_Model):
    #: Loopback unless told otherwise; the container image sets ROTATOR_DAEMON_HOST=0.0.0.0
    #: so that the kubelet and Prometheus reach the probes and metrics in the pod.
    host: str = Field(default_factory=lambda: os.environ.get("ROTATOR_DAEMON_HOST", "127.0.0.1"))
    port: int = Field(default=8080, ge=0, le=65535)
    #: An HTTP connection that makes no progress for this long is closed.
    request_timeout: Duration = timedelta(seconds=10)
    max_connections: int = Field(default=512, ge=1, le=10000)
    concurrency: int = Field(default=4, ge=1, le=256)
    tick: Duration = timedelta(seconds=60)
    shutdown_timeout: Duration = timedelta(seconds=25)
    misfire_grace: Duration = timedelta(minutes=5)

    @field_validator("tick", "misfire_grace")
    @classmethod
    def _longer_than_zero(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero, e.g. '60s'")
        return value


NotifyOn = Literal[
    "needs_attention", "failed", "rolled_back", "completed", "waiting", "grace_extended"
]
DEFAULT_NOTIFY_ON: tuple[NotifyOn, ...] = ("needs_attention", "rolled_back", "grace_extended")


class WebhookConfig(_Model):
    url: str
    format: Literal["json", "slack"] = "json"
    events: list[NotifyOn] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    policies: list[str] | None = None
    timeout: float = Field(default=5.0, gt=0)
    #: CA certificates (PEM) to trust for this webhook's host, e.g. a private CA.
    ca_bundle: FilePath | None = None


class NotificationsConfig(_Model):
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)


class ConfigSections(_Model):
    """Every top-level section of the file but ``policies``."""

    allow_literal_secrets: bool = False
    database: DatabaseConfig = Field(default_factory=dict, validate_default=True)
    vault: VaultConfig = Field(default_factory=dict, validate_default=True)
    audit: AuditConfig = Field(default_factory=dict, validate_default=True)
    daemon: DaemonConfig = Field(default_factory=dict, validate_default=True)
    notifications: NotificationsConfig = Field(default_factory=dict, validate_default=True)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RawConfig(ConfigSections):
    """The whole file, before vendor-specific checks."""

    policies: dict[str, PolicyConfig] = Field(default_factory=dict)


class ConfigEnvelope(ConfigSections):
    """The whole file with each policy left as written: the loader checks them one at a time.

    Checked all at once, every policy's models would be held beside the YAML data, which
    doubles the parse's peak (and the daemon's RSS keeps the peak).
    """

    policies: dict[str, Any] = Field(default_factory=dict)
