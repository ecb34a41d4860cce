"""Webhooks hear about rotations that need a person, never see a secret, never break one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.support.rig import Rig
from tests.support.servers import free_port
from tests.support.webhook import WebhookReceiver

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.stop()


def with_webhook(rig: Rig, url: str, fmt: str = "json", on: str = "[needs_attention]") -> None:
    rig.extra_config = f"""
    notifications:
      webhooks:
        ops: {{url: "{url}", format: {fmt}, events: {on}}}
    """
    rig.write_config()


def test_needs_attention_is_posted_without_secrets(
    rig_factory: RigFactory, receiver: WebhookReceiver
) -> None:
    rig = rig_factory(VENDOR)
    spec = rig.add_policy("app", strategy="create_then_delete")
    with_webhook(rig, receiver.url, on="[failed, needs_attention]")
    rig.server.fail("POST", "api_keys$", status=503, times=100)

    result = rig.run("rotate", "now", "app")

    assert len(receiver.received) == 1, result.stderr[-3000:]
    [sent] = receiver.received
    assert sent["policy"] == "app"
    assert sent["result"] == "failed"
    assert "503" in sent["message"]
    for secret in (spec.slot.secret, rig.openbao.root_token):
        assert secret not in receiver.raw[0]


def test_success_is_posted_only_when_asked(
    rig_factory: RigFactory, receiver: WebhookReceiver
) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    with_webhook(rig, receiver.url, fmt="slack", on="[completed]")

    rig.run("rotate", "now", "app")

    [sent] = receiver.received
    assert "policy *app* completed" in sent["text"]
    assert rig.vault_secret("app") not in receiver.raw[0]


def test_a_failing_webhook_never_fails_the_rotation(rig_factory: RigFactory) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    url = f"http://127.0.0.1:{free_port()}/down/T0SECRET/B0SECRET"
    with_webhook(rig, url, on="[completed]")

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout.splitlines()[-1])["result"] == "completed"
    assert "webhook notification failed" in result.stderr
    assert url not in result.stderr, "a webhook URL is a credential and is never logged"


def test_a_webhook_erroring_500_never_fails_the_rotation(rig_factory: RigFactory) -> None:
    failing = WebhookReceiver(status=500)
    try:
        rig = rig_factory(VENDOR)
        rig.add_policy("app", strategy="create_then_delete", grace="0s")
        with_webhook(rig, failing.url, on="[completed]")
        result = rig.run("rotate", "now", "app", "--json")
    finally:
        failing.stop()
    assert result.returncode == 0
    assert len(failing.received) == 1
