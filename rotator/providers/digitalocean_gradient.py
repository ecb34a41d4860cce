"""DigitalOcean Gradient AI agent API keys (``type: digitalocean_gradient``).

Contract: tests/contracts/digitalocean-gradient-agent-api-keys.openapi.yaml
(cut from digitalocean/openapi). Keys belong to an agent; both flows exist:
``PUT .../regenerate`` replaces the secret in place, or a new key is created
and the old one deleted after the grace period.

Rate limits: calls are paced to the burst limit (250 a minute) per account; a
429 with ``retry-after`` (burst) is waited out, and one without it (the hourly
limit of 5,000) is waited out until ``ratelimit-reset`` when that is within the
retry cap, else the step fails and is retried at the reset time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field

from rotator.errors import VendorError
from rotator.providers.base import (
    Capabilities,
    KeySelector,
    MintedKey,
    ProviderSettings,
    Strategy,
    VendorKey,
)
from rotator.providers.http import HttpProvider, parse_timestamp
from rotator.providers.ratelimit import RateLimit
from rotator.providers.request import PlannedCall, VendorRequest
from rotator.providers.responses import VendorBody, pages
from rotator.secret import Secret

DEFAULT_BASE_URL = "https://api.digitalocean.com"
#: DigitalOcean documents no limit on agent key names; a conservative guess.
MAX_NAME_LENGTH = 64


class DigitalOceanGradientSettings(ProviderSettings):
    type: Literal["digitalocean_gradient"]
    per_page: int = Field(default=100, ge=1, le=200)
    #: The documented burst limit; the hourly one (5,000) is met by waiting for its reset.
    rate_limit: RateLimit | None = RateLimit(requests=250, per=timedelta(minutes=1))


class DigitalOceanGradientSelector(KeySelector):
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset({"name_prefix", "api_key_uuid"})
    agent_uuid: str = Field(min_length=1)
    #: The key to rotate first; later rotations follow the key rotator created.
    api_key_uuid: str | None = None


class _KeyInfo(VendorBody):
    uuid: str = Field(min_length=1)
    name: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    deleted_at: str | None = None
    secret_key: str | None = None


class _PageLinks(VendorBody):
    next: str | None = None


class _Links(VendorBody):
    pages: _PageLinks | None = None


class _Meta(VendorBody):
    pages: int | None = None


class _KeyPage(VendorBody):
    api_key_infos: list[_KeyInfo] | None = None
    links: _Links | None = None
    meta: _Meta | None = None


class _KeyAnswer(VendorBody):
    api_key_info: _KeyInfo


class DigitalOceanGradientProvider(
    HttpProvider[DigitalOceanGradientSettings, DigitalOceanGradientSelector]
):
    """DigitalOcean Gradient agent keys. Configuration::

    providers:
      do-prod:
        type: digitalocean_gradient
        token: "${DIGITALOCEAN_TOKEN}"    # scopes genai:create, read, update, delete
        # base_url: https://api.digitalocean.com
        # rate_limit: {requests: 250, per: 1m}   # the default: DigitalOcean's burst limit
    policies:
      support-bot:
        provider: do-prod
        key: {agent_uuid: "3f1c...", api_key_uuid: "9b2e..."}   # api_key_uuid optional
        strategy: create_then_delete        # or regenerate
    """

    type_name = "digitalocean_gradient"
    settings_model = DigitalOceanGradientSettings
    selector_model = DigitalOceanGradientSelector
    key_id_field = "api_key_uuid"
    capabilities = Capabilities(
        strategies=frozenset({Strategy.REGENERATE, Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the vendor lists the new key as live (no call uses the key itself)",
        max_name_length=MAX_NAME_LENGTH,
    )
    vendor_name = "DigitalOcean"
    default_base_url = DEFAULT_BASE_URL
    error_fields = ("id", "message", "request_id")

    @staticmethod
    def _keys_path(selector: DigitalOceanGradientSelector) -> str:
        return f"/v2/gen-ai/agents/{selector.agent_uuid}/api_keys"

    def _list_request(self, selector: DigitalOceanGradientSelector, page: int) -> VendorRequest:
        params = {"page": page, "per_page": self.settings.per_page}
        return VendorRequest.build("GET", self._keys_path(selector), params=params)

    def _create_request(self, selector: DigitalOceanGradientSelector, name: str) -> VendorRequest:
        body = {"agent_uuid": selector.agent_uuid, "name": name}
        return VendorRequest.build("POST", self._keys_path(selector), body=body)

    def _regenerate_request(
        self, selector: DigitalOceanGradientSelector, key_id: str
    ) -> VendorRequest:
        path = f"{self._keys_path(selector)}/{key_id}/regenerate"
        return VendorRequest.build("PUT", path, idempotent=False)

    def _delete_request(self, selector: DigitalOceanGradientSelector, key_id: str) -> VendorRequest:
        return VendorRequest.build("DELETE", f"{self._keys_path(selector)}/{key_id}")

    def list_keys(self, selector: DigitalOceanGradientSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        for index in pages(f"{self.vendor_name} GET {self._keys_path(selector)}"):
            page = index + 1
            body = self._http.fetch(_KeyPage, self._list_request(selector, page))
            infos = body.api_key_infos or []
            keys.extend(_vendor_key(info) for info in infos if not info.deleted_at)
            total = body.meta.pages if body.meta else None
            has_next = bool(body.links and body.links.pages and body.links.pages.next)
            last = page >= total if total is not None else not has_next
            if not infos or last:
                break
        return keys

    def create_key(
        self,
        selector: DigitalOceanGradientSelector,
        name: str,
        secret: Secret | None,
        *,
        replacing: str | None,
    ) -> MintedKey:
        answer = self._http.fetch(_KeyAnswer, self._create_request(selector, name))
        return _minted(answer, "create")

    def regenerate_key(self, selector: DigitalOceanGradientSelector, key_id: str) -> MintedKey:
        answer = self._http.fetch(_KeyAnswer, self._regenerate_request(selector, key_id))
        return _minted(answer, "regenerate")

    def revoke_key(self, selector: DigitalOceanGradientSelector, key_id: str) -> None:
        request = self._delete_request(selector, key_id)
        self.revoke_step(selector, key_id, lambda: self._http.send(request))

    def verify_key(self, selector: DigitalOceanGradientSelector, minted: MintedKey) -> bool:
        return any(key.key_id == minted.key.key_id for key in self.list_keys(selector))

    def plan_list(self, selector: DigitalOceanGradientSelector) -> list[PlannedCall]:
        return [PlannedCall(self._list_request(selector, 1), every_page=True)]

    def plan_create(
        self, selector: DigitalOceanGradientSelector, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        return [PlannedCall(self._create_request(selector, name))]

    def plan_regenerate(
        self, selector: DigitalOceanGradientSelector, key_id: str
    ) -> list[PlannedCall]:
        return [PlannedCall(self._regenerate_request(selector, key_id))]

    def plan_revoke(self, selector: DigitalOceanGradientSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._delete_request(selector, key_id))]

    def plan_verify(self, selector: DigitalOceanGradientSelector, key_id: str) -> list[PlannedCall]:
        return [
            replace(call, note=f"the new key {key_id} must be listed")
            for call in self.plan_list(selector)
        ]


def _vendor_key(info: _KeyInfo) -> VendorKey:
    return VendorKey(
        key_id=info.uuid,
        name=info.name,
        created_at=parse_timestamp(info.created_at),
        extra={"created_by": info.created_by},
    )


def _minted(answer: _KeyAnswer, operation: str) -> MintedKey:
    info = answer.api_key_info
    if not info.secret_key:
        raise VendorError(
            f"DigitalOcean {operation} answered without api_key_info.secret_key; "
            "the key may exist without its secret: run 'rotator plan' to find it"
        )
    return MintedKey(key=_vendor_key(info), secret=Secret(info.secret_key))
