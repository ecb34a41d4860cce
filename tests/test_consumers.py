"""Getting the new key to consumers: per-policy KV mounts, hooks after store and revoke, refresh.

CLI-level over PostgreSQL, OpenBao, a vendor emulator, a loopback webhook
receiver and a loopback stand-in for the Kubernetes apps/v1 API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.kubernetes_api import AppsApiServer
from tests.support.rig import Rig
from tests.support.webhook import WebhookReceiver

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"
SA_TOKEN = "service-account-token-for-tests"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver()
    yield started
    started.stop()


@pytest.fixture
def apps_api() -> Iterator[AppsApiServer]:
    started = AppsApiServer(SA_TOKEN)
    started.add("shop", "deployments", "web")
    yield started
    started.stop()


def policy_with(rig: Rig, name: str, extra: str, *, grace: str = "1h") -> Rig:
    """Add policy ``name`` and append ``extra`` YAML (policy-level keys) to it."""
    spec = rig.add_policy(name, strategy="create_then_delete", grace=grace)
    line = f"    vault: {{path: {spec.vault_path}, field: api_key}}\n"
    indented = "".join(f"    {row}\n" for row in extra.strip("\n").splitlines())
    text = rig.config_path.read_text()
    assert line in text
    rig.config_path.write_text(text.replace(line, line + indented))
    return rig


def kubernetes_section(rig: Rig, apps_api: AppsApiServer) -> None:
    token_file = rig.tmp / "sa-token"
    token_file.write_text(SA_TOKEN)
    with rig.config_path.open("a") as config:
        config.write(
            f"kubernetes: {{api_url: {apps_api.address}, token_file: {token_file}, "
            "ca_file: null, timeout: 5}\n"
        )


def hook_events(rig: Rig, policy: str) -> list[tuple[str, dict[str, object]]]:
    store = rig.store()
    events = [(e.outcome, e.details) for e in store.events(policy=policy) if e.step == "hook"]
    store.dispose()
    return events


def rotate_now(rig: Rig, policy: str) -> dict[str, object]:
    result = rig.run("rotate", "now", policy, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


# -- per-policy KV mount -------------------------------------------------------


def test_a_policy_writes_to_its_own_kv_mount(rig_factory: RigFactory, vault_prefix: str) -> None:
    rig = rig_factory(VENDOR)
    mount = f"kv-{vault_prefix}"
    rig.vault_api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": 2}})
    spec = rig.add_policy("app", strategy="create_then_delete")
    rig.vault_api(
        "POST", f"{mount}/data/{spec.vault_path}", {"data": {"api_key": spec.slot.secret}}
    )
    text = rig.config_path.read_text()
    rig.config_path.write_text(text.replace("field: api_key}", f"field: api_key, mount: {mount}}}"))

    assert rotate_now(rig, "app")["result"] == "waiting"

    own = rig.vault_api("GET", f"{mount}/data/{spec.vault_path}")["data"]
    assert own["metadata"]["version"] == 2
    assert rig.vendor_accepts("app", own["data"]["api_key"])
    assert rig.vault_version("app") == 1, "the global mount's copy is not touched"


def test_two_policies_may_use_the_same_path_in_different_mounts(rig_factory: RigFactory) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("one", strategy="create_then_delete")
    rig.add_policy("two", strategy="create_then_delete")
    text = rig.config_path.read_text()
    path_one = rig.policies["one"].vault_path
    path_two = rig.policies["two"].vault_path
    rig.config_path.write_text(
        text.replace(
            f"path: {path_two}, field: api_key}}",
            f"path: {path_one}, field: api_key, mount: other}}",
        )
    )

    result = rig.run("validate")

    assert result.returncode == 0, result.stderr


# -- hooks ---------------------------------------------------------------------


def test_notify_hook_after_store_names_the_key_and_vault_version_never_the_secret(
    rig_factory: RigFactory, receiver: WebhookReceiver
) -> None:
    rig = policy_with(
        rig_factory(VENDOR), "app", f"hooks: {{after_store: [{{notify: {{url: {receiver.url}}}}}]}}"
    )

    outcome = rotate_now(rig, "app")

    [body] = receiver.received
    secret = rig.vault_secret("app")
    assert body["event"] == "stored"
    assert body["policy"] == "app"
    assert body["key_id"] == outcome["new_key_id"]
    assert body["vault"] == {
        "mount": "secret",
        "path": rig.policies["app"].vault_path,
        "field": "api_key",
        "version": 2,
    }
    assert secret not in receiver.raw[0]
    assert [o for o, _ in hook_events(rig, "app")] == ["succeeded"]


def test_a_hook_cut_off_by_a_crash_runs_when_the_rotation_resumes(
    rig_factory: RigFactory, receiver: WebhookReceiver
) -> None:
    rig = policy_with(
        rig_factory(VENDOR), "app", f"hooks: {{after_store: [{{notify: {{url: {receiver.url}}}}}]}}"
    )
    receiver.delay = 30.0
    process = rig.spawn("rotate", "now", "app")
    deadline = time.monotonic() + 60
    while not receiver.raw and time.monotonic() < deadline:
        time.sleep(0.1)
    rig.kill(process)
    assert hook_events(rig, "app") == []
    receiver.delay = 0.0

    resumed = rig.run("rotate", "due", "--json")

    assert resumed.returncode == 0, resumed.stderr
    assert [o for o, _ in hook_events(rig, "app")] == ["succeeded"]
    assert len(receiver.received) == 2
    assert receiver.received[0] == receiver.received[1] | {"at": receiver.received[0]["at"]}


def test_notify_hook_after_revoke_runs_when_the_old_key_is_revoked(
    rig_factory: RigFactory, receiver: WebhookReceiver
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        f"hooks: {{after_revoke: [{{notify: {{url: {receiver.url}}}}}]}}",
    )
    rotate_now(rig, "app")
    assert receiver.received == []

    rig.later("app", hours=1, seconds=1)

    [body] = receiver.received
    assert body["event"] == "revoked"
    assert body["old_key_id"] == rig.policies["app"].slot.key_id


def test_kubernetes_restart_hook_patches_the_pod_template_annotation(
    rig_factory: RigFactory, apps_api: AppsApiServer
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {after_store: [{kubernetes_restart: {namespace: shop, kind: Deployment, "
        "name: web}}]}",
    )
    kubernetes_section(rig, apps_api)

    rotate_now(rig, "app")

    annotations = apps_api.annotations("shop", "deployments", "web")
    assert set(annotations) == {"rotator/rotated-at"}
    assert apps_api.patches[0]["path"] == "/apis/apps/v1/namespaces/shop/deployments/web"
    [(outcome, details)] = hook_events(rig, "app")
    assert outcome == "succeeded"
    assert details["hook"] == "after_store[0] kubernetes_restart Deployment shop/web"


def test_a_failing_hook_never_fails_the_rotation_and_is_audited_and_notified(
    rig_factory: RigFactory, apps_api: AppsApiServer, receiver: WebhookReceiver
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {tries: 1, after_store: [{kubernetes_restart: {namespace: shop, name: missing}}]}",
    )
    kubernetes_section(rig, apps_api)
    with rig.config_path.open("a") as config:
        config.write(f"notifications: {{webhooks: {{ops: {{url: {receiver.url}}}}}}}\n")

    outcome = rotate_now(rig, "app")

    assert outcome["result"] == "waiting"
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    [(result, details)] = hook_events(rig, "app")
    assert result == "failed"
    assert "no such workload" in str(details["error"])
    [note] = receiver.received
    assert note["result"] == "needs_attention"
    assert "kubernetes_restart Deployment shop/missing failed" in note["message"]
    assert "the rotation itself stands" in note["message"]


def test_a_transient_hook_failure_is_retried_at_once(
    rig_factory: RigFactory, apps_api: AppsApiServer
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {after_store: [{kubernetes_restart: {namespace: shop, name: web}}]}",
    )
    kubernetes_section(rig, apps_api)
    apps_api.fail_next = 1

    rotate_now(rig, "app")

    assert len(apps_api.patches) == 2
    assert [o for o, _ in hook_events(rig, "app")] == ["succeeded"]


def test_a_failed_hook_is_retried_when_the_rotation_next_runs_and_not_after_it_succeeded(
    rig_factory: RigFactory, apps_api: AppsApiServer
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {tries: 1, after_store: [{kubernetes_restart: {namespace: shop, name: web}}]}",
    )
    kubernetes_section(rig, apps_api)
    apps_api.fail_next = 1

    rotate_now(rig, "app")
    assert [o for o, _ in hook_events(rig, "app")] == ["failed"]
    rig.later("app", hours=1, seconds=1)
    rig.later("app", hours=1, seconds=1)

    assert [o for o, _ in hook_events(rig, "app")] == ["failed", "succeeded"]
    assert len(apps_api.patches) == 2, "one try a run (hooks.tries: 1), none once it succeeded"
    assert "rotator/rotated-at" in apps_api.annotations("shop", "deployments", "web")


def test_kubernetes_restart_hook_with_a_refused_token_says_which_permission_is_missing(
    rig_factory: RigFactory, apps_api: AppsApiServer
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {tries: 1, after_store: [{kubernetes_restart: {namespace: shop, name: web}}]}",
    )
    kubernetes_section(rig, apps_api)
    (rig.tmp / "sa-token").write_text("some-other-token")

    rotate_now(rig, "app")

    [(_, details)] = hook_events(rig, "app")
    assert "grant rotator's service account 'patch' on deployments in shop" in str(details["error"])


def test_a_hook_must_be_exactly_one_action(rig_factory: RigFactory) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {after_store: [{notify: {url: 'http://127.0.0.1:9/x'}, "
        "kubernetes_restart: {namespace: a, name: b}}]}",
    )

    result = rig.run("validate")

    assert result.returncode == 2
    assert "exactly one of 'notify: {url}' or 'kubernetes_restart'" in result.stderr


# -- consumers' refresh interval -----------------------------------------------


def test_validate_warns_when_grace_is_shorter_than_the_consumers_refresh(
    rig_factory: RigFactory,
) -> None:
    rig = policy_with(rig_factory(VENDOR), "app", "consumers: {refresh: 2h}", grace="1h")

    result = rig.run("validate")

    assert result.returncode == 0, result.stderr
    assert "grace_period 1h is shorter than consumers.refresh 2h" in result.stderr


def test_validate_is_quiet_when_grace_covers_the_consumers_refresh(
    rig_factory: RigFactory,
) -> None:
    rig = policy_with(rig_factory(VENDOR), "app", "consumers: {refresh: 30m}", grace="1h")

    result = rig.run("validate")

    assert "consumers.refresh" not in result.stderr


def test_the_readme_explains_how_each_consumer_picks_up_the_new_key() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Getting the new key to consumers", 1)[1].split("\n## ", 1)[0]
    for consumer in (
        "External Secrets Operator",
        "Vault Agent injector",
        "Vault Secrets Operator",
        "Secrets Store CSI driver",
    ):
        assert consumer in section
    assert "rotator.api_key.key_id" in section


def test_a_hook_url_that_is_unreachable_does_not_block_the_rotation(
    rig_factory: RigFactory,
) -> None:
    rig = policy_with(
        rig_factory(VENDOR),
        "app",
        "hooks: {tries: 1, after_store: [{notify: {url: 'http://127.0.0.1:9/x'}}]}",
    )

    outcome = rotate_now(rig, "app")

    assert outcome["result"] == "waiting"
    assert [o for o, _ in hook_events(rig, "app")] == ["failed"]
