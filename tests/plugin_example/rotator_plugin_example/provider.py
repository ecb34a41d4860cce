"""The Example Keys provider: service-account keys, created and deleted, verified by whoami.

The API: ``GET /accounts/{account}/keys?page=&page_size=`` (``{"keys": [...],
"next_page": N | null}``), ``POST /accounts/{account}/keys {"name"}`` -> 201 with the
secret, ``DELETE /accounts/{account}/keys/{id}`` -> 204 (404 once gone), and
``GET /whoami`` authenticated by a key itself. Each operation builds its requests with
the same ``_*_request`` method its ``plan_*`` counterpart uses, so ``plan`` and ``rotate now
--dry-run`` show the very calls the rotation sends.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from pydantic import Field

from rotator.errors import VendorAuthError, VendorError
from rotator.providers.base import (
    Capabilities,
    KeySelector,
    MintedKey,
    ProviderSettings,
    Strategy,
    VendorKey,
)
from rotator.providers.http import HttpProvider
from rotator.providers.request import PLANNED_SECRET, PlannedCall, VendorRequest
from rotator.secret import Secret


class ExampleKeysSettings(ProviderSettings):
    base_url: str = Field(description="the Example Keys API, e.g. https://keys.example.com/v1")
    page_size: int = Field(default=100, ge=1, le=500)


class ExampleKeysSelector(KeySelector):
    account: str = Field(min_length=1, description="the service account whose key rotates")
    key_id: str | None = Field(default=None, description="the key to replace first")


class ExampleKeysProvider(HttpProvider[ExampleKeysSettings, ExampleKeysSelector]):
    """Service-account keys of the Example Keys API.

    providers:
      example:
        type: example_keys
        token: "${EXAMPLE_KEYS_TOKEN}"
        base_url: https://keys.example.com/v1
    policies:
      ci-bot:
        provider: example
        key: {account: ci-bot}
    """

    type_name = "example_keys"
    settings_model = ExampleKeysSettings
    selector_model = ExampleKeysSelector
    key_id_field = "key_id"
    capabilities = Capabilities(
        strategies=frozenset({Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the new key authenticates a whoami call",
    )
    vendor_name = "Example Keys"

    @staticmethod
    def _keys(selector: ExampleKeysSelector) -> str:
        return f"/accounts/{selector.account}/keys"

    def _list_request(self, selector: ExampleKeysSelector, page: int) -> VendorRequest:
        params = {"page": page, "page_size": self.settings.page_size}
        return VendorRequest.build("GET", self._keys(selector), params=params)

    def _create_request(self, selector: ExampleKeysSelector, name: str) -> VendorRequest:
        return VendorRequest.build("POST", self._keys(selector), body={"name": name})

    def _delete_request(self, selector: ExampleKeysSelector, key_id: str) -> VendorRequest:
        return VendorRequest.build("DELETE", f"{self._keys(selector)}/{key_id}")

    #: Authenticated by the key itself: a key that works gets an answer.
    _WHOAMI: ClassVar[VendorRequest] = VendorRequest.build("GET", "/whoami")

    def list_keys(self, selector: ExampleKeysSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        page: int | None = 1
        while page is not None:
            body = self._http.send(self._list_request(selector, page)).json()
            keys.extend(_vendor_key(info) for info in body.get("keys") or [])
            page = body.get("next_page")
        return keys

    def create_key(
        self,
        selector: ExampleKeysSelector,
        name: str,
        secret: Secret | None,
        *,
        replacing: str | None,
    ) -> MintedKey:
        info = self._http.send(self._create_request(selector, name)).json() or {}
        if not info.get("id") or not info.get("secret"):
            raise VendorError("Example Keys create answered without id/secret; run 'rotator plan'")
        return MintedKey(key=_vendor_key(info), secret=Secret(info["secret"]))

    def revoke_key(self, selector: ExampleKeysSelector, key_id: str) -> None:
        request = self._delete_request(selector, key_id)
        self.revoke_step(selector, key_id, lambda: self._http.send(request))

    def verify_key(self, selector: ExampleKeysSelector, minted: MintedKey) -> bool:
        try:
            self._http.send(replace(self._WHOAMI, credential=minted.secret))
        except VendorAuthError:
            return False
        return True

    # What each operation sends, for plan and --dry-run: the same request objects.

    def plan_list(self, selector: ExampleKeysSelector) -> list[PlannedCall]:
        return [PlannedCall(self._list_request(selector, 1), every_page=True)]

    def plan_create(
        self, selector: ExampleKeysSelector, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        return [PlannedCall(self._create_request(selector, name))]

    def plan_revoke(self, selector: ExampleKeysSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._delete_request(selector, key_id))]

    def plan_verify(self, selector: ExampleKeysSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(replace(self._WHOAMI, credential=PLANNED_SECRET))]


def _vendor_key(info: dict[str, Any]) -> VendorKey:
    return VendorKey(key_id=str(info["id"]), name=info.get("name"))
