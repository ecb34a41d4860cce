"""The shape of what a policy says about its consumers: hooks to run and how often they re-read.

``hooks.after_store`` run once Vault serves the new key, ``hooks.after_revoke``
once the old key is gone. ``consumers.refresh`` is how often the slowest
consumer re-reads Vault (External Secrets Operator's ``refreshInterval``, a
Vault Agent template's lease): a grace period shorter than that revokes a key
someone still uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rotator.config.duration_field import Duration

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotifyHook(_Model):
    """POST a JSON body naming the policy, key id and Vault path and version (never the secret)."""

    url: str = Field(min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=60)


class KubernetesRestartHook(_Model):
    """Restart a workload as ``kubectl rollout restart`` does: a new pod template annotation."""

    namespace: str = Field(min_length=1, max_length=63)
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    name: str = Field(min_length=1, max_length=253)


class Hook(_Model):
    notify: NotifyHook | None = None
    kubernetes_restart: KubernetesRestartHook | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Hook:
        if (self.notify is None) == (self.kubernetes_restart is None):
            raise ValueError("each hook is exactly one of 'notify: {url}' or 'kubernetes_restart'")
        return self


class HooksConfig(_Model):
    #: Tries at once (with backoff) before a failing hook waits for the rotation's next run.
    tries: int = Field(default=3, ge=1, le=10)
    after_store: list[Hook] = Field(default_factory=list, max_length=20)
    after_revoke: list[Hook] = Field(default_factory=list, max_length=20)


class ConsumersConfig(_Model):
    #: How often the slowest consumer re-reads the secret from Vault.
    refresh: Duration | None = None


def _in_cluster_api() -> str | None:
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port or 443}"


class KubernetesConfig(_Model):
    """How ``kubernetes_restart`` hooks reach the API server: in a pod, nothing to set."""

    api_url: str | None = Field(default_factory=_in_cluster_api)
    token_file: Path = SERVICE_ACCOUNT_DIR / "token"
    ca_file: Path | None = SERVICE_ACCOUNT_DIR / "ca.crt"
    timeout: float = Field(default=10.0, gt=0, le=120)
