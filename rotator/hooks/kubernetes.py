"""The ``kubernetes_restart`` hook: a rolling restart, the way ``kubectl rollout restart`` does it.

A strategic-merge PATCH of ``spec.template.metadata.annotations`` on the
workload (apps/v1) with ``rotator/rotated-at``: a changed pod template makes
the controller replace its pods, which read the new secret as they start.
It authenticates with the pod's service-account token, read at each call
(the kubelet rotates it), and trusts the cluster CA.
"""

from __future__ import annotations

from datetime import datetime

import httpx

from rotator.config.consumers import KubernetesConfig, KubernetesRestartHook
from rotator.errors import HookFailed
from rotator.secret import scrub

ANNOTATION = "rotator/rotated-at"
_RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def restart(settings: KubernetesConfig, target: KubernetesRestartHook, at: datetime) -> None:
    """Patch the workload's pod template annotation to ``at``; raise ``HookFailed`` if refused."""
    if not settings.api_url:
        raise HookFailed(
            "kubernetes_restart hook: no API server known; run in a pod (KUBERNETES_SERVICE_HOST) "
            "or set kubernetes.api_url"
        )
    try:
        token = settings.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HookFailed(
            f"kubernetes_restart hook: cannot read the service-account token "
            f"{settings.token_file} ({exc.strerror})"
        ) from None
    resource = _RESOURCES[target.kind]
    path = f"/apis/apps/v1/namespaces/{target.namespace}/{resource}/{target.name}"
    body = {"spec": {"template": {"metadata": {"annotations": {ANNOTATION: at.isoformat()}}}}}
    verify: bool | str = (
        str(settings.ca_file) if settings.ca_file and settings.ca_file.exists() else True
    )
    where = f"{target.kind} {target.namespace}/{target.name}"
    try:
        response = httpx.patch(
            settings.api_url.rstrip("/") + path,
            json=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/strategic-merge-patch+json",
            },
            timeout=settings.timeout,
            verify=verify,
        )
    except httpx.HTTPError as exc:
        raise HookFailed(
            f"kubernetes_restart {where}: {scrub(f'{type(exc).__name__}: {exc}')}"
        ) from None
    if response.status_code in (401, 403):
        raise HookFailed(
            f"kubernetes_restart {where}: the API server refused (HTTP {response.status_code}); "
            f"grant rotator's service account 'patch' on {resource} in {target.namespace}"
        )
    if response.status_code == 404:
        raise HookFailed(f"kubernetes_restart {where}: no such workload (HTTP 404)")
    if not response.is_success:
        raise HookFailed(f"kubernetes_restart {where}: HTTP {response.status_code}")
