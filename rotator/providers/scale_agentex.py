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

from pydantic import Field, field_validator, model_validator

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
from rotator.providers.request import PLANNED_SECRET, PlannedCall, VendorRequest
from rotator.providers.responses import VendorBody, json_body, pages, plain_detail
from rotator.secret import Secret

if TYPE_CHECKING:
    import httpx

ApiKeyType = Literal["internal", "external", "github", "slack"]
#: The server stores names as VARCHAR(256) (scale-agentex ``agent_api_keys`` table).
MAX_NAME_LENGTH = 256
#: Key types the server finds by NAME (agent_api_keys use case): a github key must be named
#: after the repository's full name, a slack key after the app's api_app_id. A key renamed
#: ``rotator-...`` is never used, and a second key with the right name is a 409.
_LOOKED_UP_BY_NAME = {
    "github": "the repository's full name",
    "slack": "the Slack app's api_app_id",
}


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

    @field_validator("api_key_type")
    @classmethod
    def _rotatable_type(cls, value: ApiKeyType) -> ApiKeyType:
        if value in _LOOKED_UP_BY_NAME:
            raise ValueError(
                f"{value} keys are found by the server by name ({_LOOKED_UP_BY_NAME[value]}), "
                "so a new key under a new name would never be used and a second key under the "
                "same name is refused; rotate it by hand. rotator rotates internal and "
                "external keys"
            )
        return value

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
        body = json_body(response)
    except ValueError:
        return plain_detail(response)
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
            for item in body["detail"]
            if isinstance(item, dict)
        )
    if isinstance(body, dict) and (body.get("message") or body.get("detail")):
        # {"message", "code", "data"} from the route handlers (422s too); {"detail"} from
        # the authentication middleware.
        return str(body.get("message") or body["detail"])
    return str(body)


class _Key(VendorBody):
    id: str = Field(min_length=1)
    name: str | None = None
    agent_id: str | None = None
    api_key_type: str | None = None
    created_at: str | None = None


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
          api_key_type: external             # internal | external (github/slack: by hand)
          name_prefix: triage-key            # optional
          api_key_id: "4c1d..."              # optional: the key replaced first
        strategy: create_then_delete         # the only flow Agentex offers
        grace_period: 1h                     # >= 5m: the server caches key checks
    """

    type_name = "scale_agentex"
    settings_model = ScaleAgentexSettings
    selector_model = ScaleAgentexSelector
    key_id_field = "api_key_id"
    capabilities = Capabilities(
        strategies=frozenset({Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the vendor returns the new key by id (GET /agent_api_keys/{id})",
        caller_chooses_secret=True,
        revocation_lag=timedelta(minutes=5),
        max_name_length=MAX_NAME_LENGTH,
    )
    vendor_name = "Agentex"

    def read_error(self, response: httpx.Response) -> str:
        return read_agentex_error(response)

    def _list_request(self, selector: ScaleAgentexSelector, index: int) -> VendorRequest:
        params: dict[str, str | int] = {
            **selector.agent_params(),
            "limit": self.settings.page_size,
            "page_number": index + 1,
        }
        return VendorRequest.build("GET", "/agent_api_keys", params=params)

    @staticmethod
    def _create_request(selector: ScaleAgentexSelector, name: str, secret: Secret) -> VendorRequest:
        body: dict[str, Any] = {
            "name": name,
            **selector.agent_params(),
            "api_key_type": selector.api_key_type,
            "api_key": secret,
        }
        return VendorRequest.build("POST", "/agent_api_keys", body=body)

    @staticmethod
    def _key_request(method: str, key_id: str) -> VendorRequest:
        return VendorRequest.build(method, f"/agent_api_keys/{key_id}")

    def list_keys(self, selector: ScaleAgentexSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        for index in pages(f"{self.vendor_name} GET /agent_api_keys"):
            items = self._http.fetch(list[_Key], self._list_request(selector, index))
            keys.extend(
                _vendor_key(item)
                for item in items
                if (item.api_key_type or "external") == selector.api_key_type
            )
            if len(items) < self.settings.page_size:
                break
        return keys

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
        created = self._http.fetch(_Key, self._create_request(selector, name, secret))
        return MintedKey(_vendor_key(created), secret)

    def revoke_key(self, selector: ScaleAgentexSelector, key_id: str) -> None:
        request = self._key_request("DELETE", key_id)
        self.revoke_step(selector, key_id, lambda: self._http.send(request))

    def verify_key(self, selector: ScaleAgentexSelector, minted: MintedKey) -> bool:
        try:
            found = self._http.fetch(_Key, self._key_request("GET", minted.key.key_id))
        except VendorNotFound:
            return False
        return found.id == minted.key.key_id

    def plan_list(self, selector: ScaleAgentexSelector) -> list[PlannedCall]:
        return [PlannedCall(self._list_request(selector, 0), every_page=True)]

    def plan_create(
        self, selector: ScaleAgentexSelector, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        request = self._create_request(selector, name, PLANNED_SECRET)
        return [PlannedCall(request, note="api_key: generated by rotator, staged in Vault first")]

    def plan_revoke(self, selector: ScaleAgentexSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._key_request("DELETE", key_id))]

    def plan_verify(self, selector: ScaleAgentexSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._key_request("GET", key_id))]


def _vendor_key(item: _Key) -> VendorKey:
    return VendorKey(
        key_id=item.id,
        name=item.name,
        created_at=parse_timestamp(item.created_at),
        extra={"agent_id": item.agent_id, "api_key_type": item.api_key_type},
    )
