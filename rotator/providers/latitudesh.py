"""Latitude.sh API keys (``type: latitudesh``): JSON:API bodies, ``tok_...`` ids.

Facts from the official SDKs (tests/contracts/README.md): the token is sent
as ``Authorization: <token>`` with no scheme (configurable); ``PUT
/auth/api_keys/{id}`` rotates in place and kills the old token at once;
``POST`` creates a key that coexists with the old one, which is deleted after
grace. The secret is at ``data.attributes.token`` only in create and rotate
answers. Bodies go out as ``application/json``, as both SDKs send them.

Verification lists the keys with the new token itself: one call proves the
token authenticates and shows the key. A key with ``allowed_ips`` may be
refused only because rotator's host is not among them while every consumer is
fine, so a refused key is then looked for with the management token, and
passes if it is listed with ``allowed_ips``. A vendor that is down during verification fails the
step (retried later); only a refusal of the new token is a failed check.

Rotating the key rotator itself uses is supported, not guessed at: point the
provider's token at ``vault:PATH#FIELD`` and the policy at that same Vault
path and field. The policy must then use ``create_then_delete`` (checked when
the configuration loads); the new token is used for the rest of the rotation
and, being in Vault, from then on. A policy that would rotate rotator's own
key without that arrangement is refused before any change (``preflight``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from rotator.errors import RotationFailed, VendorAuthError, VendorError
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
from rotator.providers.responses import VendorBody, json_body, plain_detail
from rotator.secret import Secret

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.latitude.sh"
JSON_API = "application/vnd.api+json"
#: What the SDKs send as Content-Type (latitudesh-python-sdk serializes bodies as "json";
#: latitudesh-go's NewRequest sets application/json).
JSON = "application/json"
#: Latitude.sh documents no limit on key names; a conservative guess.
MAX_NAME_LENGTH = 64
#: How long the preflight's view of the old key serves the create that follows it.
_PREFLIGHT_VIEW_SECONDS = 30.0


class LatitudeshSettings(ProviderSettings):
    type: Literal["latitudesh"]
    #: The SDKs send the bare token; set "Bearer" if your account expects the scheme.
    auth_scheme: Literal["", "Bearer"] = ""


class LatitudeshSelector(KeySelector):
    NOT_SLOT: ClassVar[frozenset[str]] = frozenset({"name_prefix", "api_key_id"})
    api_key_id: str | None = Field(
        default=None, pattern=r"^tok_\w+$", description="the key to rotate first (tok_...)"
    )


def read_jsonapi_error(response: httpx.Response) -> str:
    try:
        body = json_body(response)
    except ValueError:
        return plain_detail(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(
            ": ".join(str(e[k]) for k in ("title", "detail") if isinstance(e, dict) and e.get(k))
            for e in errors
        )
    return str(body)


class _Attributes(VendorBody):
    name: str | None = None
    token: str | None = None
    token_last_slice: str | None = None
    read_only: bool | None = None
    allowed_ips: list[str] | None = None
    created_at: str | None = None
    last_used_at: str | None = None


class _Item(VendorBody):
    id: str = Field(min_length=1)
    attributes: _Attributes = _Attributes()


class _One(VendorBody):
    data: _Item


class _Many(VendorBody):
    data: list[_Item] | None = None


class LatitudeshProvider(HttpProvider[LatitudeshSettings, LatitudeshSelector]):
    """Latitude.sh API keys. Configuration::

    providers:
      latitude:
        type: latitudesh
        token: "vault:rotator/latitude#token"   # or "${LATITUDESH_TOKEN}"
        # auth_scheme: ""                        # "Bearer" to send "Bearer <token>"
    policies:
      bare-metal-ci:
        provider: latitude
        key: {api_key_id: tok_zlkg1DegdvZE5}     # required for regenerate
        strategy: create_then_delete             # or regenerate (no overlap)
    """

    type_name = "latitudesh"
    settings_model = LatitudeshSettings
    selector_model = LatitudeshSelector
    key_id_field = "api_key_id"
    capabilities = Capabilities(
        strategies=frozenset({Strategy.REGENERATE, Strategy.CREATE_THEN_DELETE}),
        can_verify=True,
        verification="the new token lists the new key (GET /auth/api_keys sent with it); a key "
        "with allowed_ips: listed, using the management token (rotator's host may not be allowed)",
        max_name_length=MAX_NAME_LENGTH,
        reports_usage=True,
    )
    vendor_name = "Latitude.sh"
    default_base_url = DEFAULT_BASE_URL
    extra_headers = {"Accept": JSON_API}  # noqa: RUF012

    def __init__(self, settings: LatitudeshSettings, token: Secret) -> None:
        super().__init__(settings, token)
        #: The old key as this thread's preflight just listed it: its create then copies
        #: the key's restrictions without listing the whole account again.
        self._preflight_view = threading.local()

    def auth_headers(self, token: Secret) -> dict[str, str]:
        scheme = self.settings.auth_scheme
        return {"Authorization": f"{scheme} {token.reveal()}" if scheme else token.reveal()}

    @staticmethod
    def _create_request(name: str, old: _Attributes | None) -> VendorRequest:
        attributes: dict[str, Any] = {"name": name}
        if old is not None:
            attributes["read_only"] = bool(old.read_only)
            if old.allowed_ips:
                attributes["allowed_ips"] = list(old.allowed_ips)
        body = {"data": {"type": "api_keys", "attributes": attributes}}
        return _request("POST", "/auth/api_keys", body)

    @staticmethod
    def _regenerate_request(key_id: str) -> VendorRequest:
        body = {"data": {"type": "api_keys", "id": key_id, "attributes": {}}}
        return _request("PUT", f"/auth/api_keys/{key_id}", body, idempotent=False)

    #: Listing the keys is also how a token proves it authenticates.
    _LIST: ClassVar[VendorRequest] = VendorRequest.build("GET", "/auth/api_keys")

    def _keys(self) -> list[_Item]:
        return self._http.fetch(_Many, self._LIST).data or []

    def read_error(self, response: httpx.Response) -> str:
        return read_jsonapi_error(response)

    def list_keys(self, selector: LatitudeshSelector) -> list[VendorKey]:
        return [_vendor_key(item) for item in self._keys()]

    def find_key(self, selector: LatitudeshSelector, key_id: str) -> VendorKey | None:
        # The listing is the whole account: only the key asked for is converted (its
        # timestamps parsed), not every key of every team member.
        return next((_vendor_key(item) for item in self._keys() if item.id == key_id), None)

    def create_key(
        self,
        selector: LatitudeshSelector,
        name: str,
        secret: Secret | None,
        *,
        replacing: str | None,
    ) -> MintedKey:
        old = None
        if replacing:
            old = self._taken_preflight_view(replacing)
            if old is None:
                old = next((item.attributes for item in self._keys() if item.id == replacing), None)
        return _minted(self._http.fetch(_One, self._create_request(name, old)), "create")

    def regenerate_key(self, selector: LatitudeshSelector, key_id: str) -> MintedKey:
        return _minted(self._http.fetch(_One, self._regenerate_request(key_id)), "rotate")

    def revoke_key(self, selector: LatitudeshSelector, key_id: str) -> None:
        request = _request("DELETE", f"/auth/api_keys/{key_id}")
        self.revoke_step(selector, key_id, lambda: self._http.send(request))

    def verify_key(self, selector: LatitudeshSelector, minted: MintedKey) -> bool:
        key_id = minted.key.key_id
        # The new token's own listing both proves it authenticates and shows the key: one
        # call, where listing with the management token first made two.
        try:
            listed = self._http.fetch(_Many, replace(self._LIST, credential=minted.secret))
        except VendorAuthError:
            pass
        else:
            return any(item.id == key_id for item in listed.data or [])
        # Refused: a key with allowed_ips may be refused only because of rotator's address.
        try:
            found = next((item for item in self._keys() if item.id == key_id), None)
        except VendorAuthError:
            if self.token.reveal() == minted.secret.reveal():
                # Rotating its own token, rotator lists with the new key: a refusal is its verdict.
                return False
            raise
        return found is not None and bool(found.attributes.allowed_ips)

    def preflight(
        self, selector: LatitudeshSelector, key_id: str | None, *, self_rotating: bool
    ) -> None:
        if self_rotating or not key_id:
            return
        own = self.token.reveal()
        old = next((item for item in self._keys() if item.id == key_id), None)
        if old is None:
            return
        tail = old.attributes.token_last_slice
        if tail and len(tail) >= 4 and own.endswith(tail):
            raise RotationFailed(
                f"key {key_id} is the token rotator itself uses for Latitude.sh; rotating "
                "it this way would cut rotator off. Store that token in Vault, set the "
                "provider's token to vault:PATH#FIELD and point this policy's vault at the "
                "same PATH and FIELD (see the README)"
            )
        self._preflight_view.seen = (key_id, old.attributes, time.monotonic())

    def _taken_preflight_view(self, key_id: str) -> _Attributes | None:
        """The old key's attributes if this thread's preflight listed them just now (once)."""
        seen = getattr(self._preflight_view, "seen", None)
        self._preflight_view.seen = None
        if seen is None:
            return None
        listed_id, attributes, at = seen
        fresh = time.monotonic() - at < _PREFLIGHT_VIEW_SECONDS
        return attributes if listed_id == key_id and fresh else None

    def plan_list(self, selector: LatitudeshSelector) -> list[PlannedCall]:
        return [PlannedCall(self._LIST)]

    def plan_create(
        self, selector: LatitudeshSelector, name: str, *, replacing: str | None
    ) -> list[PlannedCall]:
        if not replacing:
            return [PlannedCall(self._create_request(name, None))]
        note = "read_only and allowed_ips: the replaced key's"
        listing = PlannedCall(self._LIST, only_if="the preflight did not just list the old key")
        return [listing, PlannedCall(self._create_request(name, None), note=note)]

    def plan_regenerate(self, selector: LatitudeshSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(self._regenerate_request(key_id), note="the old token dies at once")]

    def plan_revoke(self, selector: LatitudeshSelector, key_id: str) -> list[PlannedCall]:
        return [PlannedCall(_request("DELETE", f"/auth/api_keys/{key_id}"))]

    def plan_verify(self, selector: LatitudeshSelector, key_id: str) -> list[PlannedCall]:
        check = replace(self._LIST, credential=PLANNED_SECRET)
        return [
            PlannedCall(check, note=f"the new key {key_id} must be listed, by the new token"),
            PlannedCall(
                self._LIST,
                note="a key with allowed_ips: listed, using the management token, is all the check",
                only_if="the new token is refused",
            ),
        ]

    def plan_preflight(
        self, selector: LatitudeshSelector, key_id: str | None, *, self_rotating: bool
    ) -> list[PlannedCall]:
        if self_rotating or not key_id:
            return []
        return [PlannedCall(self._LIST, note=f"is {key_id} rotator's own token?")]


def _vendor_key(item: _Item) -> VendorKey:
    attributes = item.attributes
    return VendorKey(
        key_id=item.id,
        name=attributes.name,
        created_at=parse_timestamp(attributes.created_at),
        last_used_at=parse_timestamp(attributes.last_used_at),
        extra={
            "read_only": attributes.read_only,
            "allowed_ips": attributes.allowed_ips,
            "token_last_slice": attributes.token_last_slice,
        },
    )


def _minted(answer: _One, operation: str) -> MintedKey:
    token = answer.data.attributes.token
    if not token:
        raise VendorError(
            f"Latitude.sh {operation} answered without data.attributes.token; the key may "
            "exist without its secret: run 'rotator plan' to find it"
        )
    return MintedKey(_vendor_key(answer.data), Secret(token))


def _request(method: str, path: str, body: Any = None, **kw: Any) -> VendorRequest:
    return VendorRequest.build(method, path, body=body, headers=_content_type(body), **kw)


def _content_type(body: Any) -> dict[str, str]:
    return {"Content-Type": JSON} if body is not None else {}
