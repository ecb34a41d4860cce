"""Webhook notifications (generic JSON or Slack-compatible) about rotation outcomes.

A notification never carries a secret: it is built from an ``Outcome``, whose
fields are ids, states and messages, and its text is scrubbed once more. A
failing webhook is logged and never fails a rotation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from rotator.config.credentials import Credential
from rotator.config.loader import Webhook
from rotator.log import get_logger
from rotator.secret import Secret, scrub
from rotator.tls import context_for
from rotator.vocabulary import Outcome, Result

log = get_logger("rotator.notify")


def payload(outcome: Outcome, webhook: Webhook) -> dict[str, Any]:
    """The JSON body for ``webhook``; only non-secret fields of ``outcome``."""
    message = scrub(outcome.message)
    if webhook.format == "slack":
        icon = {Result.COMPLETED: ":white_check_mark:", Result.WAITING: ":hourglass:"}.get(
            outcome.result, ":rotating_light:"
        )
        text = f"{icon} rotator: policy *{outcome.policy}* {outcome.result.value}: {message}"
        return {"text": text}
    return {
        "source": "rotator",
        "policy": outcome.policy,
        "result": outcome.result.value,
        "rotation_id": outcome.rotation_id,
        "state": outcome.state,
        "new_key_id": outcome.new_key_id,
        "vault_version": outcome.vault_version,
        "message": message,
    }


class Notifier:
    """Sends each outcome to the webhooks that asked for its kind and its policy."""

    def __init__(self, webhooks: list[Webhook], resolve: Callable[[Credential], Secret]) -> None:
        self._webhooks = webhooks
        self._resolve = resolve

    def notify(self, outcome: Outcome) -> None:
        for webhook in self._webhooks:
            if outcome.result.value not in webhook.events:
                continue
            if webhook.policies is not None and outcome.policy not in webhook.policies:
                continue
            self._send(webhook, outcome)

    def _send(self, webhook: Webhook, outcome: Outcome) -> None:
        try:
            url = self._resolve(webhook.url)
            response = httpx.post(
                url.reveal(),
                json=payload(outcome, webhook),
                timeout=webhook.timeout,
                verify=context_for(webhook.ca_bundle),
            )
            response.raise_for_status()
        except Exception as exc:  # a notification must never fail a rotation
            log.warning(
                "webhook notification failed",
                webhook=webhook.name,
                policy=outcome.policy,
                error=scrub(f"{type(exc).__name__}: {exc}"),
            )
