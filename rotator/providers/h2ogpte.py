"""H2O GPTe admin API keys (``type: h2ogpte``): an admin issues keys for a user.

Facts from the official SDK (``h2ogpte`` 1.7.5, see tests/contracts/README.md):
paths use ``/admin/api_keys`` with an underscore; create answers 201 with the
secret once; list pages by ``offset``/``limit`` until a short page; expiry,
deactivate and delete answer 204. Only ``create_then_delete`` exists. After
the new key is in Vault, the old key's expiry is set to the end of the grace
period, so the vendor itself ends the overlap even if rotator is down; after
grace the old key is deactivated (irreversible), then deleted. No call that
uses only the new key is documented, so this provider does not verify.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

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

DEFAULT_BASE_URL = "https://h2ogpte.genai.h2o.ai/api/v1"
_INTERVAL = r"^\d+ (second|minute|hour|day|week|month|year)s?$"


class H2oGpteSettings(ProviderSettings):
    type: Literal["h2ogpte"]
    page_size: int = Field(default=100, ge=1, le=1000)


class H2oGpteSelector(KeySelector):
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset(
        {
            "name_prefix",
            "api_key_id",
            "username",
            "collection_id",
            "inactivity_interval",
            "expires_in",
        }
    )
    user_id: str = Field(min_length=1, description="the user the keys belong to")
    username: str | None = Field(default=None, description="narrows listing (vendor filter)")
    api_key_id: str | None = Field(default=None, description="the key to replace first")
    collection_id: str | None = None
    inactivity_interval: int | None = Field(default=None, ge=1, description="days")
    expires_in: str | None = Field(default=None, pattern=_INTERVAL, description="e.g. '90 days'")


class H2oGpteProvider(HttpProvider[H2oGpteSettings, H2oGpteSelector]):
    """H2O GPTe admin API keys. Configuration::

    providers:
      h2o:
        type: h2ogpte
        base_url: https://h2ogpte.example.com/api/v1   # self-hosted installs
        token: "${H2OGPTE_ADMIN_KEY}"                  # an admin's sk-... key
    policies:
      analyst-key:
        provider: h2o
        key:
          user_id: "5a1f..."          # required by the vendor
          username: analyst           # optional: narrows key listing
          api_key_id: "c0ffee..."     # optional: the key replaced first
          collection_id: "7d2e..."    # optional: scope the new key to a collection
          inactivity_interval: 30     # optional, days
          expires_in: "90 days"       # optional: vendor-side expiry of each new key
        strategy: create_then_delete
    """

    type_name = "h2ogpte"
    settings_model = H2oGpteSettings
    selector_model = H2oGpteSelector
    capabilities = Capabilities(
        strategies=frozenset({Strategy.CREATE_THEN_DELETE}),
        can_verify=False,
        verification="none: H2O GPTe documents no call that uses only the new key",
        max_name_length=100,
    )
    vendor_name = "H2O GPTe"
    default_base_url = DEFAULT_BASE_URL
    error_fields = ("error_type", "message")

    def list_keys(self, selector: H2oGpteSelector) -> list[VendorKey]:
        keys: list[VendorKey] = []
        offset, limit = 0, self.settings.page_size
        while True:
            params: dict[str, str | int] = {"offset": offset, "limit": limit}
            if selector.username:
                params["filter"] = selector.username
            page = self._http.request("GET", "/admin/api_keys", params=params).json() or []
            keys.extend(
                _vendor_key(info)
                for info in page
                if info.get("is_active", True)
                and (not selector.username or info.get("username") == selector.username)
            )
            if len(page) < limit:
                return keys
            offset += limit

    def create_key(
        self, selector: H2oGpteSelector, name: str, secret: Secret | None, *, replacing: str | None
    ) -> MintedKey:
        body: dict[str, Any] = {"user_id": selector.user_id, "name": name}
        for field in ("collection_id", "expires_in", "inactivity_interval"):
            value = getattr(selector, field)
            if value is not None:
                body[field] = value
        result = self._http.request("POST", "/admin/api_keys", json=body).json() or {}
        info, secret_key = result.get("api_key") or {}, result.get("secret_key")
        if not info.get("id") or not secret_key:
            raise VendorError(
                "H2O GPTe create answered without api_key.id/secret_key; the key may exist "
                "without its secret: run 'rotator plan' to find it"
            )
        return MintedKey(_vendor_key(info), Secret(secret_key))

    def prepare_grace(
        self, selector: H2oGpteSelector, old_key_id: str, grace_ends: datetime
    ) -> None:
        seconds = int((grace_ends - datetime.now(grace_ends.tzinfo)).total_seconds())
        if seconds <= 0:
            return
        try:
            self._http.request(
                "PATCH",
                f"/admin/api_keys/expire/{old_key_id}",
                json={"expires_in": f"{seconds} seconds"},
            )
        except VendorNotFound:
            return

    def revoke_key(self, selector: H2oGpteSelector, key_id: str) -> None:
        try:
            self._http.request("POST", f"/admin/api_keys/deactivate/{key_id}", idempotent=True)
            self._http.request("DELETE", f"/admin/api_keys/{key_id}")
        except VendorNotFound:
            return

    def configured_key_id(self, selector: H2oGpteSelector) -> str | None:
        return selector.api_key_id

    def describe_call(self, operation: str, selector: H2oGpteSelector, subject: str = "") -> str:
        calls = {
            "list": "GET /admin/api_keys?offset=&limit= (every page"
            + (f", filter={selector.username})" if selector.username else ")"),
            "create": f'POST /admin/api_keys {{"user_id": "{selector.user_id}", '
            f'"name": "{subject}"}}',
            "prepare_grace": f"PATCH /admin/api_keys/expire/{subject} (expires at grace end)",
            "revoke": f"POST /admin/api_keys/deactivate/{subject}, then "
            f"DELETE /admin/api_keys/{subject}",
        }
        return calls.get(operation) or super().describe_call(operation, selector, subject)


def _vendor_key(info: dict[str, Any]) -> VendorKey:
    return VendorKey(
        key_id=str(info.get("id")),
        name=info.get("name"),
        created_at=parse_timestamp(info.get("created_at")),
        last_used_at=parse_timestamp(info.get("last_used_at")),
        expires_at=parse_timestamp(info.get("expires_at")),
        extra={
            "username": info.get("username"),
            "total_calls": info.get("total_calls"),
            "hint": info.get("hint"),
        },
    )
