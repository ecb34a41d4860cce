"""DigitalOcean Gradient AI agent API keys (``type: digitalocean_gradient``).

Contract: tests/contracts/digitalocean-gradient-agent-api-keys.openapi.yaml
(cut from digitalocean/openapi). Keys belong to an agent; both flows exist:
``PUT .../regenerate`` replaces the secret in place, or a new key is created
and the old one deleted after the grace period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

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

DEFAULT_BASE_URL = "https://api.digitalocean.com"


class DigitalOceanGradientSettings(ProviderSettings):
    type: Literal["digitalocean_gradient"]
    per_page: int = Field(default=100, ge=1, le=200)


class DigitalOceanGradientSelector(KeySelector):
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset({"name_prefix", "api_key_uuid"})
    agent_uuid: str = Field(min_length=1)
    #: The key to rotate first; later rotations follow the key rotator created.
    api_key_uuid: str | None = None


class DigitalOceanGradientProvider(
    HttpProvider[DigitalOceanGradientSettings, DigitalOceanGradientSelector]
):
    """DigitalOcean Gradient agent keys. Configuration::

    providers:
      do-prod:
        type: digitalocean_gradient
        token: "${DIGITALOCEAN_TOKEN}"    # scopes genai:create, read, update, delete
        # base_url: https://api.digitalocean.com
    policies:
      support-bot:
        provider: do-prod
        key: {agent_uuid: "3f1c...", api_key_uuid: "9b2e..."}   # api_key_uuid optional
        strategy: create_then_delete        # or regenerate
    """

    type_name = "digitalocean_gradient"
    settings_model = DigitalOceanGradientSettings
    selector_model = DigitalOceanGradientSelector
    capabilities = Capabilities(
        strategies=frozenset({Strategy.REGENERATE, Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the vendor lists the new key as live (no call uses the key itself)",
        max_name_length=64,
    )
    vendor_name = "DigitalOcean"
    default_base_url = DEFAULT_BASE_URL
    error_fields = ("id", "message", "request_id")

    @staticmethod
    def _keys_path(selector: DigitalOceanGradientSelector) -> str:
        return f"/v2/gen-ai/agents/{selector.agent_uuid}/api_keys"

    def list_keys(self, selector: DigitalOceanGradientSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        page = 1
        while True:
            body = self._http.request(
                "GET",
                self._keys_path(selector),
                params={"page": page, "per_page": self.settings.per_page},
            ).json()
            infos = body.get("api_key_infos") or []
            keys.extend(_vendor_key(info) for info in infos if not info.get("deleted_at"))
            pages = (body.get("meta") or {}).get("pages")
            has_next = bool(((body.get("links") or {}).get("pages") or {}).get("next"))
            if (
                not infos
                or (pages is not None and page >= pages)
                or (pages is None and not has_next)
            ):
                return keys
            page += 1

    def create_key(
        self,
        selector: DigitalOceanGradientSelector,
        name: str,
        secret: Secret | None,
        *,
        replacing: str | None,
    ) -> MintedKey:
        response = self._http.request(
            "POST",
            self._keys_path(selector),
            json={"agent_uuid": selector.agent_uuid, "name": name},
        )
        return _minted(response, "create")

    def regenerate_key(self, selector: DigitalOceanGradientSelector, key_id: str) -> MintedKey:
        response = self._http.request(
            "PUT", f"{self._keys_path(selector)}/{key_id}/regenerate", idempotent=False
        )
        return _minted(response, "regenerate")

    def revoke_key(self, selector: DigitalOceanGradientSelector, key_id: str) -> None:
        try:
            self._http.request("DELETE", f"{self._keys_path(selector)}/{key_id}")
        except VendorNotFound:
            return

    def verify_key(self, selector: DigitalOceanGradientSelector, minted: MintedKey) -> bool:
        return any(key.key_id == minted.key.key_id for key in self.list_keys(selector))

    def describe_call(
        self, operation: str, selector: DigitalOceanGradientSelector, subject: str = ""
    ) -> str:
        path = self._keys_path(selector)
        calls = {
            "list": f"GET {path} (every page)",
            "create": f'POST {path} {{"name": "{subject}"}}',
            "regenerate": f"PUT {path}/{subject}/regenerate",
            "revoke": f"DELETE {path}/{subject}",
            "verify": f"GET {path} (the new key {subject} must be listed)",
        }
        return calls.get(operation) or super().describe_call(operation, selector, subject)

    def configured_key_id(self, selector: DigitalOceanGradientSelector) -> str | None:
        return selector.api_key_uuid


def _vendor_key(info: dict[str, Any]) -> VendorKey:
    return VendorKey(
        key_id=str(info.get("uuid")),
        name=info.get("name"),
        created_at=parse_timestamp(info.get("created_at")),
        extra={"created_by": info.get("created_by")},
    )


def _minted(response: httpx.Response, operation: str) -> MintedKey:
    info = (response.json() or {}).get("api_key_info") or {}
    secret = info.get("secret_key")
    if not info.get("uuid") or not secret:
        raise VendorError(
            f"DigitalOcean {operation} answered without api_key_info.uuid/secret_key; "
            "the key may exist without its secret: run 'rotator plan' to find it"
        )
    return MintedKey(key=_vendor_key(info), secret=Secret(secret))
