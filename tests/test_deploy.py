"""deploy/: manifests valid for Kubernetes and hardened, and a Vault policy that fits."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from rotator.config.loader import parse_config
from tests.support.rig import Rig

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
RigFactory = Callable[[str], Rig]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [doc for _, doc in manifests() if doc["kind"] == kind]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


@pytest.mark.parametrize(
    ("path", "doc"), manifests(), ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_every_manifest_validates_against_the_kubernetes_schema(
    path: Path, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", sorted(KUBERNETES.rglob("kustomization.yaml")))
def test_every_kustomization_names_files_that_exist(kustomization: Path) -> None:
    for resource in yaml.safe_load(kustomization.read_text())["resources"]:
        assert (kustomization.parent / resource).exists(), resource


def test_there_is_a_daemon_overlay_and_a_cronjob_overlay() -> None:
    daemon = yaml.safe_load((KUBERNETES / "overlays/daemon/kustomization.yaml").read_text())
    cronjob = yaml.safe_load((KUBERNETES / "overlays/cronjob/kustomization.yaml").read_text())
    assert "deployment.yaml" in daemon["resources"]
    assert "cronjob.yaml" in cronjob["resources"]


@pytest.mark.parametrize("kind", ["Deployment", "CronJob", "Job"])
def test_pods_run_hardened(kind: str) -> None:
    spec = pod_spec(by_kind(kind))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["serviceAccountName"] == "rotator"
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])


def test_the_daemon_has_probes_and_scrape_annotations() -> None:
    deployment = by_kind("Deployment")
    container = pod_spec(deployment)["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_the_cronjob_never_overlaps_itself_and_runs_rotate_due() -> None:
    cronjob = by_kind("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cronjob)["containers"][0]["args"][:2] == ["rotate", "due"]


def test_the_migration_job_runs_db_upgrade() -> None:
    assert pod_spec(by_kind("Job"))["containers"][0]["args"] == ["db", "upgrade"]


def test_the_configmap_holds_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_DB_PASSWORD", "pw")
    monkeypatch.setenv("ROTATOR_SLACK_WEBHOOK", "https://hooks.slack.example/T0/B0/x")
    text = by_kind("ConfigMap")["data"]["rotator.yaml"]
    config = parse_config(text, "configmap rotator.yaml")
    assert "support-bot" in config.policies


def test_the_image_runs_as_a_non_root_user_without_build_tools() -> None:
    dockerfile = (DEPLOY / "docker/Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001", final_stage, re.M)
    assert 'ENTRYPOINT ["rotator"]' in final_stage
    assert "slim" in final_stage.splitlines()[0]
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in final_stage


def test_the_vault_policy_is_enough_for_a_rotation_and_no_more(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")  # this vendor also needs the staging area
    policy = (DEPLOY / "vault/rotator-policy.hcl").read_text()
    policy = policy.replace("secret/data/apps/", f"secret/data/{rig.vault_prefix}/")
    policy = policy.replace("secret/metadata/apps/", f"secret/metadata/{rig.vault_prefix}/")
    name = f"rotator-{rig.vault_prefix}"
    rig.vault_api("PUT", f"sys/policies/acl/{name}", {"policy": policy})
    token = rig.vault_api("POST", "auth/token/create", {"policies": [name]})["auth"]["client_token"]
    rig.add_policy("app", strategy="create_then_delete", grace="0s")

    result = rig.run("rotate", "now", "app", env={"TEST_VAULT_TOKEN": token})

    assert result.returncode == 0, result.stderr
    denied = httpx.post(
        f"{rig.openbao.address}/v1/secret/data/elsewhere/x",
        headers={"X-Vault-Token": token},
        json={"data": {"k": "v"}},
    )
    assert denied.status_code == 403
