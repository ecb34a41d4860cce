"""H2O GPTe admin API keys (``type: h2ogpte``): an admin issues keys for a user.

Facts from the official SDK (``h2ogpte`` 1.7.5, see tests/contracts/README.md):
paths use ``/admin/api_keys`` with an underscore; create answers 201 with the
secret once; list pages by ``offset``/``limit`` until a short page; expiry,
deactivate and delete answer 204. Only ``create_then_delete`` exists. After
the new key is in Vault, the old key's expiry is set to the end of the grace
period, so the vendor itself ends the overlap even if rotator is down; after
grace the old key is deactivated (irreversible), then deleted; either step,
when refused, asks the listing whether it is already done (the SDK declares
409 for deactivating an inactive key and no 404 for delete). Expiry is sent in
whole minutes, the smallest unit the SDK documents; a vendor that refuses it
leaves the overlap to rotator's own grace period. No call that uses only the
new key is documented, so this provider does not verify.

``APIKeyInfo`` carries a username but no user id, so ``username`` is required:
without it the slot would be every user's keys.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field

from rotator.errors import VendorError, VendorNotFound
from rotator.log import get_logger
from rotator.providers.base import (
    Capabilities,
    KeySelector,
    MintedKey,
    ProviderSettings,
    Strategy,
    VendorKey,
)
from rotator.providers.http import HttpProvider, parse_timestamp
from rotator.providers.request import PlannedCall, VendorRequest
from rotator.providers.responses import VendorBody, pages
from rotator.secret import Secret

DEFAULT_BASE_URL = "https://h2ogpte.genai.h2o.ai/api/v1"
#: The SDK documents intervals as whole units ("30 minutes", "30 days"), never seconds.
_INTERVAL = r"^\d+ (minute|hour|day|week|month|year)s?$"
#: The SDK documents no limit on key names; a conservative guess.
MAX_NAME_LENGTH = 100
#: Settings of the replaced key that a new key keeps unless the policy sets them.
_INHERITED = ("collection_id", "inactivity_interval")

log = get_logger("rotator.providers.h2ogpte")


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
    username: str = Field(min_length=1, description="whose keys: the listing carries no user id")
    api_key_id: str | None = Field(default=None, description="the key to replace first")
    collection_id: str | None = None
    inactivity_interval: int | None = Field(default=None, ge=1, description="days")
    expires_in: str | None = Field(default=None, pattern=_INTERVAL, description="e.g. '90 days'")


class _KeyInfo(VendorBody):
    id: str = Field(min_length=1)
    name: str | None = None
    username: str | None = None
    is_active: bool | None = None
    created_at: str | None = None
    last_used_at: str | None = None
    expires_at: str | None = None
    total_calls: int | None = None
    hint: str | None = None
    collection_id: str | None = None
    inactivity_interval: int | None = None


class _Created(VendorBody):
    api_key: _KeyInfo
    secret_key: str = Field(min_length=1)


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
          username: analyst           # required: the listing names keys by username only
          api_key_id: "c0ffee..."     # optional: the key replaced first
          collection_id: "7d2e..."    # optional (default: the replaced key's collection)
          inactivity_interval: 30     # optional, days (default: the replaced key's)
          expires_in: "90 days"       # optional: vendor-side expiry of each new key
        strategy: create_then_delete
    """

    type_name = "h2ogpte"
    settings_model = H2oGpteSettings
    selector_model = H2oGpteSelector
    key_id_field = "api_key_id"
    capabilities = Capabilities(
        strategies=frozenset({Strategy.CREATE_THEN_DELETE}),
        can_verify=False,
        verification="none: H2O GPTe documents no call that uses only the new key",
        max_name_length=MAX_NAME_LENGTH,
        reports_usage=True,
    )
    vendor_name = "H2O GPTe"
    default_base_url = DEFAULT_BASE_URL
    error_fields = ("error_type", "message")

    def _list_request(self, selector: H2oGpteSelector, index: int) -> VendorRequest:
        limit = self.settings.page_size
        params: dict[str, str | int] = {
            "offset": index * limit,
            "limit": limit,
            "filter": selector.username,
        }
        return VendorRequest.build("GET", "/admin/api_keys", params=params)

    @staticmethod
    def _create_request(
        selector: H2oGpteSelector, name: str, old: VendorKey | None
    ) -> VendorRequest:
        body: dict[str, Any] = {"user_id": selector.user_id, "name": name}
        for field in ("collection_id", "expires_in", "inactivity_interval"):
            value = getattr(selector, field)
            if value is None and old is not None and field in _INHERITED:
                value = old.extra.get(field)
            if value is not None:
                body[field] = value
        return VendorRequest.build("POST", "/admin/api_keys", body=body)

    @staticmethod
    def _expiry_request(old_key_id: str, seconds: float) -> VendorRequest | None:
        """The old key's expiry at the end of grace, in whole minutes; None when grace is over."""
        if seconds <= 0:
            return None
        minutes = math.ceil(seconds / 60)
        path = f"/admin/api_keys/expire/{old_key_id}"
        return VendorRequest.build("PATCH", path, body={"expires_in": f"{minutes} minutes"})

    @staticmethod
    def _cancel_expiry_request(old_key_id: str) -> VendorRequest:
        """Without ``expires_in`` the vendor removes the key's expiry; safe to repeat."""
        path = f"/admin/api_keys/expire/{old_key_id}"
        return VendorRequest.build("PATCH", path, body={}, idempotent=True)

    @staticmethod
    def _revoke_requests(key_id: str) -> tuple[VendorRequest, VendorRequest]:
        """Deactivate (irreversible), then delete."""
        return (
            VendorRequest.build("POST", f"/admin/api_keys/deactivate/{key_id}", idempotent=True),
            VendorRequest.build("DELETE", f"/admin/api_keys/{key_id}"),
        )

    def list_keys(self, selector: H2oGpteSelector) -> list[VendorKey]:
        return [key for key in self._all_keys(selector) if key.active]

    def find_key(self, selector: H2oGpteSelector, key_id: str) -> VendorKey | None:
        return next((key for key in self._all_keys(selector) if key.key_id == key_id), None)

    def _all_keys(self, selector: H2oGpteSelector) -> list[VendorKey]:
        """The user's keys, deactivated ones included (the vendor filter is a substring)."""
        keys: list[VendorKey] = []
        for index in pages(f"{self.vendor_name} GET /admin/api_keys"):
            page = self._http.fetch(list[_KeyInfo], self._list_request(selector, index))
            keys.extend(_vendor_key(info) for info in page if info.username == selector.username)
            if len(page) < self.settings.page_size:
                break
        return keys

    def create_key(
        self, selector: H2oGpteSelector, name: str, secret: Secret | None, *, replacing: str | None
    ) -> MintedKey:
        old = self.find_key(selector, replacing) if replacing else None
        created = self._http.fetch(_Created, self._create_request(selector, name, old))
        return MintedKey(_vendor_key(created.api_key), Secret(created.secret_key))

    def prepare_grace(
        self, selector: H2oGpteSelector, old_key_id: str, grace_ends: datetime
    ) -> None:
        seconds = (grace_ends - datetime.now(grace_ends.tzinfo)).total_seconds()
        request = self._expiry_request(old_key_id, seconds)
        if request is None:
            return
        try:
            self._http.send(request)
        except VendorNotFound:
            return
        except VendorError as exc:
            if exc.status not in (400, 409):
                raise
            # The new key is already in Vault: a refused expiry only loses the vendor-side
            # backstop; rotator still revokes the old key when the grace period ends.
            log.warning(
                "vendor refused the old key's expiry; rotator's grace period still applies",
                key_id=old_key_id,
                error=str(exc),
            )

    def cancel_grace(self, selector: H2oGpteSelector, old_key_id: str) -> None:
        """Lift the expiry ``prepare_grace`` set: without ``expires_in`` the vendor removes it.

        An expiry the key had before its grace (``expires_in`` at creation) is not restored.
        """
        self._http.send(self._cancel_expiry_request(old_key_id))

    def revoke_key(self, selector: H2oGpteSelector, key_id: str) -> None:
        deactivate, delete = self._revoke_requests(key_id)
        self.revoke_step(
            selector, key_id, lambda: self._http.send(deactivate), done_when_inactive=True
        )
        self.revoke_step(selector, key_id, lambda: self._http.send(delete))

    def plan_list(self, selector: H2oGpteSelector) -> list[PlannedCall]:
        return [PlannedCall(self._list_request(selector, 0), every_page=True)]

    def plan_create(
        self, selector: H2oGpteSelector, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        inherited = [f for f in _INHERITED if getattr(selector, f) is None]
        note = f"{' and '.join(inherited)}: the replaced key's" if inherited and replacing else ""
        create = PlannedCall(self._create_request(selector, name, None), note=note)
        return [*(self.plan_find_key(selector, replacing) if replacing else []), create]

    def plan_prepare_grace(
        self, selector: H2oGpteSelector, old_key_id: str, grace: timedelta
    ) -> list[PlannedCall]:
        request = self._expiry_request(old_key_id, grace.total_seconds())
        return [PlannedCall(request)] if request is not None else []

    def plan_cancel_grace(self, selector: H2oGpteSelector, old_key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._cancel_expiry_request(old_key_id))]

    def plan_revoke(self, selector: H2oGpteSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(request) for request in self._revoke_requests(key_id)]


def _vendor_key(info: _KeyInfo) -> VendorKey:
    return VendorKey(
        key_id=info.id,
        name=info.name,
        created_at=parse_timestamp(info.created_at),
        last_used_at=parse_timestamp(info.last_used_at),
        expires_at=parse_timestamp(info.expires_at),
        active=info.is_active is not False,
        extra={
            "username": info.username,
            "total_calls": info.total_calls,
            "hint": info.hint,
            "collection_id": info.collection_id,
            "inactivity_interval": info.inactivity_interval,
        },
    )
