"""deploy/: the Helm chart and the kustomize manifests it generates, rendered by the real helm and
kubectl, valid for Kubernetes and hardened; the container image; a Vault policy that fits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from rotator import __version__
from rotator.config.loader import parse_config
from rotator.providers.registry import provider_class
from tests.support.rig import Rig

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm/rotator"
WORKFLOW = ROOT / ".github/workflows/image.yml"
KUBERNETES_VERSION = "1.30.0"
RigFactory = Callable[[str], Rig]
Manifest = dict[str, Any]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
POD_KINDS = ("Deployment", "CronJob", "Job", "Pod")
#: Values under which the chart must render: both modes, monitoring on and off.
SETTINGS = {
    "daemon": {"mode": "daemon"},
    "daemon-monitoring": {"mode": "daemon", "monitoring.enabled": "true"},
    "cronjob": {"mode": "cronjob"},
    "cronjob-monitoring": {"mode": "cronjob", "monitoring.enabled": "true"},
    "cronjob-network-policy": {
        "mode": "cronjob",
        "networkPolicy.enabled": "true",
        "networkPolicy.extraEgress[0].to[0].podSelector.matchLabels.app": "vault",
    },
    "daemon-everything": {
        "mode": "daemon",
        "monitoring.enabled": "true",
        "monitoring.dashboard.enabled": "true",
        "networkPolicy.enabled": "true",
        "networkPolicy.postgres.cidrs[0]": "10.0.1.0/24",
        "networkPolicy.vault.cidrs[0]": "10.0.2.0/24",
        "networkPolicy.vendors.cidrs[0]": "0.0.0.0/0",
    },
}


@cache
def tools() -> dict[str, str]:
    """helm and kubectl, fetched once by scripts/k8s-tools."""
    out = subprocess.run(
        [str(ROOT / "scripts/k8s-tools")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tools()["helm"], *args], capture_output=True, text=True, timeout=60)


def set_flags(values: dict[str, str]) -> list[str]:
    return [flag for key, value in values.items() for flag in ("--set", f"{key}={value}")]


@cache
def _render(items: tuple[tuple[str, str], ...]) -> tuple[Manifest, ...]:
    result = helm("template", "rel", str(CHART), *set_flags(dict(items)))
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(**values: str) -> list[Manifest]:
    """The chart rendered by helm with ``values`` (keys as for --set)."""
    return list(_render(tuple(sorted(values.items()))))


def rendered(settings: str) -> list[Manifest]:
    return render(**SETTINGS[settings])


def one(docs: list[Manifest], kind: str, component: str | None = None) -> Manifest:
    [doc] = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None or d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        )
    ]
    return doc


def pod_spec(doc: Manifest) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    return dict(doc["spec"]["template"]["spec"])


def release_config(docs: list[Manifest]) -> str:
    """rotator.yaml from the release's ConfigMap (not the migration hook's copy)."""
    return str(one(docs, "ConfigMap", "config")["data"]["rotator.yaml"])


def kustomize(overlay: str) -> list[Manifest]:
    result = subprocess.run(
        [tools()["kubectl"], "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def every_manifest() -> Iterator[tuple[str, Manifest]]:
    for settings in SETTINGS:
        for doc in rendered(settings):
            yield f"helm-{settings}", doc
    for overlay in ("daemon", "cronjob"):
        for doc in kustomize(overlay):
            yield f"kustomize-{overlay}", doc


# -- helm ----------------------------------------------------------------------------


@pytest.mark.parametrize("settings", sorted(SETTINGS))
def test_helm_lint_strict_passes(settings: str) -> None:
    result = helm("lint", "--strict", str(CHART), *set_flags(SETTINGS[settings]))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "deamon"}, "value must be one of 'daemon', 'cronjob'"),
        ({"replicas": "two"}, "/replicas"),
        ({"cronjob.shedule": "x"}, "additional properties 'shedule' not allowed"),
    ],
    ids=["unknown-mode", "wrong-type", "misspelt-key"],
)
def test_helm_lint_and_install_refuse_values_against_the_schema(
    values: dict[str, str], message: str
) -> None:
    lint = helm("lint", "--strict", str(CHART), *set_flags(values))
    template = helm("template", "rel", str(CHART), *set_flags(values))
    assert lint.returncode != 0
    assert message in lint.stdout + lint.stderr
    assert template.returncode != 0
    assert message in template.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vault.auth.method": "token"}, "vault.auth.token.existingSecret is required"),
        ({"config.inline.daemon.port": "9000"}, "set the value daemon.port instead"),
        ({"networkPolicy.enabled": "true"}, "networkPolicy.vault.cidrs: list Vault's CIDRs"),
    ],
    ids=["missing-secret", "port-in-config", "network-policy-without-vault"],
)
def test_helm_install_refuses_inconsistent_values_saying_what_to_set(
    values: dict[str, str], message: str
) -> None:
    result = helm("template", "rel", str(CHART), *set_flags(values))
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("source", "doc"),
    list(every_manifest()),
    ids=lambda v: f"{v['kind']}-{v['metadata']['name']}" if isinstance(v, dict) else v,
)
def test_every_manifest_validates_against_the_kubernetes_schema(source: str, doc: Manifest) -> None:
    if doc["kind"] in CRD_KINDS:
        check_custom_resource(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def check_custom_resource(doc: Manifest) -> None:
    """The prometheus-operator fields rotator's resources need, present and well-typed."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    if doc["kind"] == "ServiceMonitor":
        assert spec["selector"]["matchLabels"]
        assert all(e["port"] and e["path"] == "/metrics" for e in spec["endpoints"])
        return
    assert spec["groups"]
    for group in spec["groups"]:
        assert group["name"]
        assert group["rules"]
        for rule in group["rules"]:
            assert isinstance(rule["alert"], str)
            assert isinstance(rule["expr"], str)
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


@pytest.mark.parametrize("settings", sorted(SETTINGS))
def test_pods_run_hardened(settings: str) -> None:
    docs = [d for d in rendered(settings) if d["kind"] in POD_KINDS]
    assert docs
    for doc in docs:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"requests", "limits"} <= set(container["resources"])


@pytest.mark.parametrize("source", ["chart", "kustomize"])
def test_every_rotator_pod_names_itself_and_its_service_account_in_the_audit_trail(
    source: str,
) -> None:
    docs = (
        [*rendered("daemon"), *rendered("cronjob")]
        if source == "chart"
        else [
            *kustomize("daemon"),
            *kustomize("cronjob"),
        ]
    )
    pods = [d for d in docs if d["kind"] in POD_KINDS]
    assert pods
    for doc in pods:
        for container in pod_spec(doc)["containers"]:
            fields = {
                e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                for e in container["env"]
            }
            assert fields["POD_NAME"] == "metadata.name"
            assert fields["POD_SERVICE_ACCOUNT"] == "spec.serviceAccountName"


def test_the_daemon_has_startup_liveness_and_readiness_probes() -> None:
    container = pod_spec(one(rendered("daemon"), "Deployment"))["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Probes and scrapes come from outside the pod.
    assert {"name": "ROTATOR_DAEMON_HOST", "value": "0.0.0.0"} in container["env"]  # noqa: S104


def test_cronjob_mode_has_no_deployment_and_never_overlaps_itself() -> None:
    docs = rendered("cronjob")
    cronjob = one(docs, "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cronjob)["containers"][0]["args"][:2] == ["rotate", "due"]
    assert not [d for d in docs if d["kind"] in ("Deployment", "Service", "PodDisruptionBudget")]


def test_the_migration_is_a_hook_before_install_and_upgrade_that_never_collides() -> None:
    job = one(rendered("daemon"), "Job")
    annotations = job["metadata"]["annotations"]
    assert pod_spec(job)["containers"][0]["args"] == ["db", "upgrade"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    config = one(rendered("daemon"), "ConfigMap", "db-upgrade")
    assert config["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )


def test_helm_test_runs_validate_online() -> None:
    pod = one(rendered("daemon"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod_spec(pod)["containers"][0]["args"] == ["validate", "--online"]


def test_a_disruption_budget_only_for_a_daemon_with_several_replicas() -> None:
    assert one(render(mode="daemon", replicas="2"), "PodDisruptionBudget")
    assert not [
        d for d in render(mode="daemon", replicas="1") if d["kind"] == "PodDisruptionBudget"
    ]


def test_the_network_policy_opens_only_dns_database_vault_vendors_and_metrics() -> None:
    policy = one(rendered("daemon-everything"), "NetworkPolicy")["spec"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"]
    egress = policy["egress"]
    assert [p["port"] for p in egress[0]["ports"]] == [53, 53]
    assert [
        (rule["to"][0]["ipBlock"]["cidr"], rule["ports"][0]["port"]) for rule in egress[1:]
    ] == [
        ("10.0.1.0/24", 5432),
        ("10.0.2.0/24", 8200),
        ("0.0.0.0/0", 443),
    ]


@pytest.mark.parametrize("mode", ["daemon", "cronjob"])
def test_monitoring_resources_come_only_with_monitoring_enabled(mode: str) -> None:
    kinds = {d["kind"] for d in render(mode=mode)}
    assert not kinds & CRD_KINDS
    kinds = {d["kind"] for d in render(mode=mode, **{"monitoring.enabled": "true"})}
    # A CronJob has no endpoint to scrape; its alerts still apply to a daemon elsewhere.
    assert kinds & CRD_KINDS == (
        {"ServiceMonitor", "PrometheusRule"} if mode == "daemon" else {"PrometheusRule"}
    )


def test_prometheus_io_annotations_only_when_asked() -> None:
    def annotations(**values: str) -> dict[str, str]:
        pod = one(render(mode="daemon", **values), "Deployment")["spec"]["template"]
        return dict(pod["metadata"].get("annotations", {}))

    assert "prometheus.io/scrape" not in annotations()
    assert annotations(**{"monitoring.legacyAnnotations": "true"})["prometheus.io/scrape"] == "true"


@pytest.mark.parametrize(
    ("method", "values", "expected"),
    [
        (
            "kubernetes",
            {},
            {"method": "kubernetes", "role": "rotator", "mount_point": "kubernetes"},
        ),
        (
            "token",
            {"vault.auth.token.existingSecret": "vault-token"},
            {"method": "token", "token_file": "/var/run/secrets/rotator/vault/token"},
        ),
        (
            "approle",
            {"vault.auth.approle.roleId": "r-1", "vault.auth.approle.existingSecret": "approle"},
            {
                "method": "approle",
                "role_id": "r-1",
                "secret_id_file": "/var/run/secrets/rotator/vault/secret-id",
                "mount_point": "approle",
            },
        ),
    ],
)
def test_each_vault_auth_method_is_configured_with_the_credential_it_needs(
    method: str, values: dict[str, str], expected: dict[str, str]
) -> None:
    docs = render(mode="daemon", **{"vault.auth.method": method}, **values)
    config = yaml.safe_load(release_config(docs))
    assert config["vault"]["auth"] == expected
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    assert ("vault-credentials" in volumes) is (method != "kubernetes")


def test_the_charts_version_is_rotators() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__


def test_the_charts_rendered_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_DB_PASSWORD", "pw")
    monkeypatch.setenv("ROTATOR_SLACK_WEBHOOK", "https://hooks.slack.example/T0/B0/x")
    example = yaml.safe_load((KUBERNETES / "base/configmap.yaml").read_text())["data"][
        "rotator.yaml"
    ]
    inline = yaml.safe_load(example)
    inline["vault"].pop("auth")
    inline["daemon"].pop("port")
    values = {"mode": "daemon", "config": {"inline": inline}}
    result = subprocess.run(
        [tools()["helm"], "template", "rel", str(CHART), "--values", "-"],
        input=json.dumps(values),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    config = parse_config(release_config(docs), "chart rotator.yaml", provider_class)
    assert "support-bot" in config.policies
    assert config.daemon.port == 8080


# -- kustomize -------------------------------------------------------------------------


def test_the_kustomize_manifests_are_generated_from_the_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/render-kustomize"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["daemon", "cronjob"])
def test_each_kustomize_overlay_builds_with_kubectl(overlay: str) -> None:
    docs = kustomize(overlay)
    assert {d["metadata"]["namespace"] for d in docs} == {"rotator"}
    kinds = {d["kind"] for d in docs}
    assert ("Deployment" if overlay == "daemon" else "CronJob") in kinds


def test_the_kustomize_migration_job_is_named_for_the_version_so_reapplying_never_collides() -> (
    None
):
    [job] = [d for d in kustomize("daemon") if d["kind"] == "Job"]
    assert job["metadata"]["name"] == f"rotator-db-upgrade-{__version__.replace('.', '-')}"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert "annotations" not in job["metadata"]


def test_kustomize_carries_no_prometheus_io_annotations() -> None:
    text = json.dumps(kustomize("daemon"))
    assert "prometheus.io/" not in text


def test_the_kustomize_configmap_holds_a_valid_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTATOR_DB_PASSWORD", "pw")
    monkeypatch.setenv("ROTATOR_SLACK_WEBHOOK", "https://hooks.slack.example/T0/B0/x")
    text = yaml.safe_load((KUBERNETES / "base/configmap.yaml").read_text())["data"]["rotator.yaml"]
    config = parse_config(text, "configmap rotator.yaml", provider_class)
    assert "support-bot" in config.policies


def test_the_image_runs_as_a_non_root_user_without_build_tools() -> None:
    dockerfile = (DEPLOY / "docker/Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001", final_stage, re.M)
    assert 'ENTRYPOINT ["rotator"]' in final_stage
    assert "slim" in final_stage.splitlines()[0]
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in final_stage


def test_the_base_image_is_pinned_by_digest_with_a_note_on_bumping_it() -> None:
    dockerfile = (DEPLOY / "docker/Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases
    assert all(re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", base) for base in bases)
    assert "docker buildx imagetools inspect" in dockerfile


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(DEPLOY / "docker/Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_workflow_is_a_valid_github_workflow() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_workflow_builds_both_architectures_pushes_to_ghcr_with_an_sbom() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["image"]["steps"]
    [build] = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action")]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["file"] == "deploy/docker/Dockerfile"
    assert build["with"]["sbom"] is True
    assert workflow["env"]["IMAGE"].startswith("ghcr.io/")
    assert any(s.get("uses", "").startswith("anchore/sbom-action") for s in steps)
    [meta] = [s for s in steps if s.get("uses", "").startswith("docker/metadata-action")]
    assert "type=semver,pattern={{version}}" in meta["with"]["tags"]


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
