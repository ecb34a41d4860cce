"""Emulator of Latitude.sh's ``/auth/api_keys`` endpoints (JSON:API).

Bodies are ``{"data": ...}``, answered in ``application/vnd.api+json`` and
sent by the SDKs as ``application/json``; the token is shown only in create
(201) and rotate (200) answers; a rotated token stops working at once; errors
are ``{"errors": [{"code", "status", "title", "detail"}]}``. ``Authorization``
carries the bare token, as the SDKs send it. Any live key's token
authenticates, from one of its ``allowed_ips`` when it has them, so rotating
rotator's own key is real. Behaviours stricter than a lenient server are
switches in ``LatitudeFidelity``, on by default.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rotator.sandbox.server import Emulator, Request, Response, Route, Slot, timestamp

JSON_API = "application/vnd.api+json"
_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}
_TITLES |= {415: "Unsupported Media Type"}
_TITLES |= {429: "Too Many Requests", 500: "Internal Server Error"}
USER = {"id": "user_k8zo0X5ym2ZvB", "email": "ops@example.com"}


@dataclass
class _Key:
    id: str
    name: str | None
    token: str
    read_only: bool = False
    allowed_ips: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=timestamp)
    updated_at: str = field(default_factory=timestamp)
    last_used_at: str | None = None

    def resource(self, *, with_token: bool) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "name": self.name,
            "api_version": "2023-06-01",
            "token_last_slice": self.token[-5:],
            "read_only": self.read_only,
            "allowed_ips": self.allowed_ips,
            "last_used_at": self.last_used_at,
            "user": USER,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if with_token:
            attributes["token"] = self.token
        return {"id": self.id, "type": "api_keys", "attributes": attributes}


@dataclass
class LatitudeFidelity:
    """Strict behaviours (all on by default); turn one off for a lenient server."""

    #: A request with a body must say ``Content-Type: application/json`` (what both SDKs
    #: send), else 415.
    json_content_type: bool = True
    #: A key with ``allowed_ips`` authenticates only from those addresses; from elsewhere it
    #: is refused as unauthenticated (the real status is not documented).
    enforce_allowed_ips: bool = True


def _new_token() -> str:
    return secrets.token_hex(32)


class LatitudeshEmulator(Emulator):
    vendor = "latitudesh"
    operations: ClassVar[dict[str, tuple[str, str]]] = {
        "create": ("POST", r"^/auth/api_keys$"),
        "regenerate": ("PUT", r"^/auth/api_keys/[^/]+$"),
        "verify": ("GET", r"^/auth/api_keys$"),
        "revoke": ("DELETE", r"^/auth/api_keys/[^/]+$"),
    }

    def __init__(self, tokens: set[str] | None = None) -> None:
        super().__init__(tokens)
        self.keys: dict[str, _Key] = {}
        self.fidelity = LatitudeFidelity()

    def add_key(
        self, name: str | None, token: str | None = None, key_id: str | None = None, **options: Any
    ) -> _Key:
        key_id = key_id or f"tok_{secrets.token_hex(7)}"
        key = _Key(key_id, name, token or _new_token(), **options)
        with self.lock:
            self.keys[key.id] = key
        return key

    def mark_used(self, key_id: str, at: datetime, calls: int = 1) -> None:
        with self.lock:
            self.keys[key_id].last_used_at = at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def seed_slot(self) -> Slot:
        key = self.add_key("existing key", read_only=True, allowed_ips=["203.0.113.7"])
        return Slot({"api_key_id": key.id}, key.id, key.token)

    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        if not selector.get("api_key_id"):
            return Slot(dict(selector), "", "")
        key = self.add_key("existing key", key_id=selector["api_key_id"])
        return Slot(dict(selector), key.id, key.token)

    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        with self.lock:
            return any(secrets.compare_digest(k.token, secret) for k in self.keys.values())

    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        with self.lock:
            return list(self.keys)

    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        with self.lock:
            self.keys.pop(key_id, None)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"keys": [k.resource(with_token=False) for k in self.keys.values()]}

    # -- contract ---------------------------------------------------------------

    def authenticated(self, request: Request) -> bool:
        presented = request.headers.get("authorization", "")
        if not presented:
            return False
        if presented in self.tokens:
            return True
        with self.lock:
            return any(
                secrets.compare_digest(k.token, presented) and self._from_allowed_ip(k, request)
                for k in self.keys.values()
            )

    def _from_allowed_ip(self, key: _Key, request: Request) -> bool:
        return not (self.fidelity.enforce_allowed_ips and key.allowed_ips) or (
            request.client in key.allowed_ips
        )

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/auth/api_keys", self._list),
            Route("POST", "/auth/api_keys", self._create),
            Route("PUT", "/auth/api_keys/{api_key_id}", self._rotate),
            Route("PATCH", "/auth/api_keys/{api_key_id}", self._update),
            Route("DELETE", "/auth/api_keys/{api_key_id}", self._delete),
        ]

    def error(self, status: int, message: str, pointer: str | None = None) -> Response:
        title = _TITLES.get(status, "Error")
        item: dict[str, Any] = {
            "code": title.lower().replace(" ", "_"),
            "status": str(status),
            "title": title,
            "detail": message,
        }
        if pointer:
            item["source"] = {"pointer": pointer}
        return Response(status, {"errors": [item]}, content_type=JSON_API)

    def _ok(self, status: int, body: Any) -> Response:
        return Response(status, body, content_type=JSON_API)

    def _data(self, request: Request, *, with_id: str | None = None) -> dict[str, Any] | Response:
        declared = request.headers.get("content-type", "").split(";")[0].strip()
        if self.fidelity.json_content_type and declared != "application/json":
            return self.error(415, f"Content-Type {declared or 'none'} is not application/json")
        try:
            body = request.json() or {}
        except ValueError:
            return self.error(400, "the body is not JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "api_keys":
            return self.error(422, "data.type must be 'api_keys'", "/data/type")
        if with_id is not None and data.get("id") not in (None, with_id):
            return self.error(422, "data.id does not match the URL", "/data/id")
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict):
            return self.error(422, "data.attributes must be an object", "/data/attributes")
        return attributes

    def _find(self, request: Request) -> _Key | Response:
        key = self.keys.get(request.path_params["api_key_id"])
        return key if key is not None else self.error(404, "API key not found")

    def _list(self, request: Request) -> Response:
        return self._ok(
            200,
            {"data": [k.resource(with_token=False) for k in self.keys.values()], "meta": {}},
        )

    def _create(self, request: Request) -> Response:
        attributes = self._data(request)
        if isinstance(attributes, Response):
            return attributes
        key = self.add_key(
            attributes.get("name"),
            read_only=bool(attributes.get("read_only", False)),
            allowed_ips=list(attributes.get("allowed_ips") or []),
        )
        return self._ok(201, {"data": key.resource(with_token=True)})

    def _key_and_attributes(self, request: Request) -> tuple[_Key, dict[str, Any]] | Response:
        key = self._find(request)
        if isinstance(key, Response):
            return key
        attributes = self._data(request, with_id=key.id)
        return attributes if isinstance(attributes, Response) else (key, attributes)

    def _rotate(self, request: Request) -> Response:
        found = self._key_and_attributes(request)
        if isinstance(found, Response):
            return found
        key, attributes = found
        key.token = _new_token()
        key.updated_at = timestamp()
        if attributes.get("name"):
            key.name = attributes["name"]
        return self._ok(200, {"data": key.resource(with_token=True)})

    def _update(self, request: Request) -> Response:
        found = self._key_and_attributes(request)
        if isinstance(found, Response):
            return found
        key, attributes = found
        key.name = attributes.get("name", key.name)
        key.read_only = bool(attributes.get("read_only", key.read_only))
        key.allowed_ips = list(attributes.get("allowed_ips", key.allowed_ips))
        key.updated_at = timestamp()
        return self._ok(200, {"data": key.resource(with_token=False)})

    def _delete(self, request: Request) -> Response:
        key = self._find(request)
        if isinstance(key, Response):
            return key
        del self.keys[key.id]
        return Response(200)
