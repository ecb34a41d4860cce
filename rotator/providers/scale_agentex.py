"""Scale Agentex agent API keys (``type: scale_agentex``), on a self-hosted Agentex server.

Contract: tests/contracts/scale-agentex-agent-api-keys.openapi.yaml (cut from
scaleapi/scale-agentex). Only ``create_then_delete`` exists, and the caller
may supply the key value: rotator generates it and stages it in Vault before
the vendor learns it, so a crash can never lose a secret the vendor accepts.
Key names are unique per (agent, name, type); each rotation uses a new name,
and a 409 on a repeated create means the earlier try succeeded. The server
caches key checks for about five minutes, so a deleted key may keep working
that long.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from rotator.errors import VendorError, VendorNotFound
from rotator.providers.base import (
    Capabilities,
    KeySelector,
    MintedKey,
    ProviderSettings,
    Strategy,
    VendorKey,
)
from rotator.providers.http import HttpProvider, parse_timestamp
from rotator.secret import Secret

if TYPE_CHECKING:
    import httpx

ApiKeyType = Literal["internal", "external", "github", "slack"]


class ScaleAgentexSettings(ProviderSettings):
    type: Literal["scale_agentex"]
    base_url: str = Field(description="the Agentex server; it is self-hosted, so required")
    page_size: int = Field(default=50, ge=1, le=1000)


class ScaleAgentexSelector(KeySelector):
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset({"name_prefix", "api_key_id"})
    agent_id: str | None = None
    agent_name: str | None = None
    api_key_type: ApiKeyType = "external"
    api_key_id: str | None = Field(default=None, description="the key to replace first")

    @model_validator(mode="after")
    def _one_agent(self) -> ScaleAgentexSelector:
        if (self.agent_id is None) == (self.agent_name is None):
            raise ValueError("set exactly one of agent_id or agent_name")
        return self

    def agent_params(self) -> dict[str, str]:
        if self.agent_id is not None:
            return {"agent_id": self.agent_id}
        assert self.agent_name is not None
        return {"agent_name": self.agent_name}


def read_agentex_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
            for item in body["detail"]
            if isinstance(item, dict)
        )
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)


class ScaleAgentexProvider(HttpProvider[ScaleAgentexSettings, ScaleAgentexSelector]):
    """Scale Agentex agent API keys. Configuration::

    providers:
      agentex:
        type: scale_agentex
        base_url: https://agentex.example.com      # required: self-hosted
        token: "${AGENTEX_TOKEN}"
    policies:
      triage-agent:
        provider: agentex
        key:
          agent_name: triage                 # or agent_id: "0b9f..." (exactly one)
          api_key_type: external             # internal | external | github | slack
          name_prefix: triage-key            # optional
          api_key_id: "4c1d..."              # optional: the key replaced first
        strategy: create_then_delete         # the only flow Agentex offers
        grace_period: 1h                     # >= 5m: the server caches key checks
    """

    type_name = "scale_agentex"
    settings_model = ScaleAgentexSettings
    selector_model = ScaleAgentexSelector
    capabilities = Capabilities(
        strategies=frozenset({Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the vendor returns the new key by id (GET /agent_api_keys/{id})",
        caller_chooses_secret=True,
        revocation_lag=timedelta(minutes=5),
        max_name_length=100,
    )
    vendor_name = "Agentex"

    def read_error(self, response: httpx.Response) -> str:
        return read_agentex_error(response)

    def list_keys(self, selector: ScaleAgentexSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        page, limit = 1, self.settings.page_size
        while True:
            params: dict[str, str | int] = {
                **selector.agent_params(),
                "limit": limit,
                "page_number": page,
            }
            items = self._http.request("GET", "/agent_api_keys", params=params).json() or []
            keys.extend(
                _vendor_key(item)
                for item in items
                if item.get("api_key_type", "external") == selector.api_key_type
            )
            if len(items) < limit:
                return keys
            page += 1

    def create_key(
        self,
        selector: ScaleAgentexSelector,
        name: str,
        secret: Secret | None,
        *,
        replacing: str | None,
    ) -> MintedKey:
        if secret is None:
            raise VendorError("Agentex keys are minted with a secret rotator generated and staged")
        body: dict[str, Any] = {
            "name": name,
            **selector.agent_params(),
            "api_key_type": selector.api_key_type,
            "api_key": secret.reveal(),
        }
        created = self._http.request("POST", "/agent_api_keys", json=body).json() or {}
        if not created.get("id"):
            raise VendorError("Agentex create answered without an id; run 'rotator plan'")
        return MintedKey(_vendor_key(created), secret)

    def revoke_key(self, selector: ScaleAgentexSelector, key_id: str) -> None:
        try:
            self._http.request("DELETE", f"/agent_api_keys/{key_id}")
        except VendorNotFound:
            return

    def verify_key(self, selector: ScaleAgentexSelector, minted: MintedKey) -> bool:
        try:
            found = self._http.request("GET", f"/agent_api_keys/{minted.key.key_id}").json()
        except VendorNotFound:
            return False
        return bool(found) and found.get("id") == minted.key.key_id

    def configured_key_id(self, selector: ScaleAgentexSelector) -> str | None:
        return selector.api_key_id

    def describe_call(
        self, operation: str, selector: ScaleAgentexSelector, subject: str = ""
    ) -> str:
        agent = ", ".join(f'"{k}": "{v}"' for k, v in selector.agent_params().items())
        calls = {
            "list": "GET /agent_api_keys?"
            + "&".join(f"{k}={v}" for k, v in selector.agent_params().items())
            + " (every page)",
            "create": f'POST /agent_api_keys {{"name": "{subject}", {agent}, '
            f'"api_key_type": "{selector.api_key_type}", "api_key": <staged in Vault first>}}',
            "verify": f"GET /agent_api_keys/{subject}",
            "revoke": f"DELETE /agent_api_keys/{subject}",
        }
        return calls.get(operation) or super().describe_call(operation, selector, subject)


def _vendor_key(item: dict[str, Any]) -> VendorKey:
    return VendorKey(
        key_id=str(item.get("id")),
        name=item.get("name"),
        created_at=parse_timestamp(item.get("created_at")),
        extra={"agent_id": item.get("agent_id"), "api_key_type": item.get("api_key_type")},
    )
