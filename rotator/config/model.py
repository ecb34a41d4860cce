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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rotator.config.consumers import ConsumersConfig, HooksConfig, KubernetesConfig
from rotator.durations import Duration
from rotator.providers.base import Strategy

DEFAULT_DATABASE_URL = "sqlite:///rotator.db"
KUBERNETES_JWT_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    url: str = Field(
        default_factory=lambda: os.environ.get("ROTATOR_DATABASE_URL", DEFAULT_DATABASE_URL)
    )


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


class VaultConfig(_Model):
    address: str | None = Field(default_factory=lambda: os.environ.get("VAULT_ADDR"))
    mount: str = "secret"
    namespace: str | None = None
    auth: VaultAuth = Field(default_factory=lambda: {"method": "token"}, validate_default=True)
    timeout: float = Field(default=10.0, gt=0)
    verify_tls: bool | str = True
    #: Where a secret rotator generates itself waits (in this mount) until the vendor has it.
    staging_prefix: str = Field(default="rotator/staging", min_length=1)

    @model_validator(mode="after")
    def _address_known(self) -> VaultConfig:
        if not self.address:
            raise ValueError("vault.address is not set and $VAULT_ADDR is empty; set one of them")
        if not self.address.startswith(("http://", "https://")):
            raise ValueError("vault.address must start with http:// or https://")
        return self


class ScheduleConfig(_Model):
    cron: str | None = None
    every: Duration | None = None
    window: Duration | None = None
    jitter: Duration | None = None

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
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("'every' must be longer than zero")
        if self.window is not None and self.window <= timedelta(0):
            raise ValueError("'window' must be longer than zero")
        if self.window is not None and self.jitter is not None and self.jitter >= self.window:
            raise ValueError("'jitter' must be shorter than 'window', or rotations would miss it")
        return self


class VaultTarget(_Model):
    path: str = Field(min_length=1)
    field: str = Field(default="api_key", min_length=1)
    #: The KV v2 mount; None means the global ``vault.mount`` (the loader fills it in).
    mount: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+(/[^/]+)*$")

    @property
    def normalized_path(self) -> str:
        return self.path.strip("/")


class PolicyConfig(_Model):
    provider: str
    key: dict[str, Any] = Field(default_factory=dict)
    strategy: Strategy = Strategy.CREATE_THEN_DELETE
    schedule: ScheduleConfig
    grace_period: Duration = timedelta(hours=24)
    vault: VaultTarget
    #: False holds the policy for good: no rotation starts (``rotator pause`` is the temporary one).
    enabled: bool = True
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    consumers: ConsumersConfig = Field(default_factory=ConsumersConfig)


class DaemonConfig(_Model):
    host: str = "0.0.0.0"  # noqa: S104 - the daemon serves probes and metrics in its pod
    port: int = Field(default=8080, ge=0, le=65535)
    concurrency: int = Field(default=4, ge=1, le=256)
    tick: Duration = timedelta(seconds=60)
    shutdown_timeout: Duration = timedelta(seconds=25)
    misfire_grace: Duration = timedelta(minutes=5)


NotifyOn = Literal["needs_attention", "failed", "rolled_back", "completed", "waiting"]
DEFAULT_NOTIFY_ON: tuple[NotifyOn, ...] = ("needs_attention", "rolled_back")


class WebhookConfig(_Model):
    url: str
    format: Literal["json", "slack"] = "json"
    events: list[NotifyOn] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    policies: list[str] | None = None
    timeout: float = Field(default=5.0, gt=0)


class NotificationsConfig(_Model):
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)


class RawConfig(_Model):
    """The whole file, before vendor-specific checks."""

    allow_literal_secrets: bool = False
    database: DatabaseConfig = Field(default_factory=dict, validate_default=True)
    vault: VaultConfig = Field(default_factory=dict, validate_default=True)
    daemon: DaemonConfig = Field(default_factory=dict, validate_default=True)
    notifications: NotificationsConfig = Field(default_factory=dict, validate_default=True)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
