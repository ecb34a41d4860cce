"""Emulator of H2O GPTe's admin API-key endpoints (``/api/v1/admin/api_keys``).

Follows the official SDK's models: 201 ``{"secret_key", "api_key"}`` on create,
a bare list paged by ``offset``/``limit`` with a username ``filter``, 204 on
deactivate/delete/expire, and ``{"code", "message", "error_type"}`` errors.
A key authenticates while it is active and not past its ``expires_at``.
Where the SDK declares a stricter answer than the seed docs, ``H2oFidelity``
holds it as a switch, on by default (sources in docs/providers.md).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from rotator.sandbox.server import Emulator, Request, Response, Route, Slot, timestamp

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_UNITS |= {"month": 30 * 86400, "year": 365 * 86400}
_INTERVAL = re.compile(r"^(\d+) (second|minute|hour|day|week|month|year)s?$")
#: The SDK documents expiry only as whole units such as "30 minutes" and "30 days".
_DOCUMENTED_UNITS = frozenset(_UNITS) - {"second"}
_ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 409: "conflict"}


@dataclass
class H2oFidelity:
    """The SDK-declared behaviours (all on by default); turn one off for the seed docs' reading."""

    #: Deactivating or expiring an inactive key is a 409 (declared for both calls).
    inactive_conflict: bool = True
    #: The SDK declares no 404 for delete: a missing key answers this status instead.
    delete_missing_status: int = 409
    #: Only the whole-unit intervals the SDK documents; "N seconds" is a 400.
    documented_units_only: bool = True


@dataclass
class _Key:
    id: str
    user_id: str
    username: str
    name: str | None
    secret: str
    created_at: str
    collection_id: str | None = None
    expires_at: datetime | None = None
    inactivity_interval: int | None = None
    is_active: bool = True
    total_calls: int = 0
    last_used_at: str | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name or "",
            "hint": "..." + self.secret[-4:],
            "created_at": self.created_at,
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            if self.expires_at
            else None,
            "last_used_at": self.last_used_at,
            "inactivity_interval": self.inactivity_interval,
            "total_calls": self.total_calls,
            "is_active": self.is_active,
            "collection_name": f"collection {self.collection_id}" if self.collection_id else None,
            "collection_id": self.collection_id,
            "is_global_key": self.collection_id is None,
        }

    def usable(self) -> bool:
        return self.is_active and (self.expires_at is None or self.expires_at > datetime.now(UTC))


def _interval(text: Any, units: frozenset[str] | set[str]) -> timedelta | None:
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    if not match or match.group(2) not in units:
        return None
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class H2oGpteEmulator(Emulator):
    vendor = "h2ogpte"
    base_path = "/api/v1"
    operations: ClassVar[dict[str, tuple[str, str]]] = {
        "create": ("POST", r"/admin/api_keys$"),
        "revoke": ("DELETE", r"/admin/api_keys/[^/]+$"),
        "prepare_grace": ("PATCH", r"/admin/api_keys/expire/[^/]+$"),
    }

    def __init__(self, tokens: set[str] | None = None) -> None:
        super().__init__(tokens)
        self.users: dict[str, str] = {}
        self.keys: dict[str, _Key] = {}
        self.fidelity = H2oFidelity()

    def add_user(self, user_id: str | None = None, username: str | None = None) -> tuple[str, str]:
        user_id = user_id or str(uuid.uuid4())
        with self.lock:
            self.users[user_id] = username or f"user-{user_id[:8]}"
        return user_id, self.users[user_id]

    def add_key(
        self, user_id: str, name: str | None, key_id: str | None = None, **options: Any
    ) -> _Key:
        key = _Key(
            id=key_id or str(uuid.uuid4()),
            user_id=user_id,
            username=self.users[user_id],
            name=name,
            secret="sk-" + secrets.token_urlsafe(32),
            created_at=timestamp(),
            **options,
        )
        with self.lock:
            self.keys[key.id] = key
        return key

    def mark_used(self, key_id: str, at: datetime, calls: int = 1) -> None:
        with self.lock:
            key = self.keys[key_id]
            key.last_used_at = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            key.total_calls += calls

    def seed_slot(self) -> Slot:
        user_id, username = self.add_user()
        key = self.add_key(user_id, "existing key")
        return Slot(
            {"user_id": user_id, "username": username, "api_key_id": key.id}, key.id, key.secret
        )

    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        user_id, _ = self.add_user(selector["user_id"], selector.get("username"))
        if not selector.get("api_key_id"):
            return Slot(dict(selector), "", "")
        key = self.add_key(user_id, "existing key", selector["api_key_id"])
        return Slot(dict(selector), key.id, key.secret)

    def _slot_keys(self, selector: Mapping[str, Any]) -> list[_Key]:
        return [k for k in self.keys.values() if k.user_id == selector["user_id"]]

    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        with self.lock:
            return any(
                k.usable() and secrets.compare_digest(k.secret, secret)
                for k in self._slot_keys(selector)
            )

    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        with self.lock:
            return [k.id for k in self._slot_keys(selector) if k.usable()]

    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        with self.lock:
            self.keys.pop(key_id, None)

    def expiry_of(self, key_id: str) -> datetime | None:
        return self.keys[key_id].expires_at

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"users": dict(self.users), "keys": [k.info() for k in self.keys.values()]}

    # -- contract ---------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/admin/api_keys", self._list),
            Route("POST", "/admin/api_keys", self._create),
            Route("POST", "/admin/api_keys/deactivate/{key_id}", self._deactivate),
            Route("DELETE", "/admin/api_keys/{key_id}", self._delete),
            Route("PATCH", "/admin/api_keys/expire/{key_id}", self._expire),
        ]

    def error(self, status: int, message: str) -> Response:
        body: dict[str, Any] = {"code": status, "message": message}
        if status in _ERROR_TYPES:
            body["error_type"] = _ERROR_TYPES[status]
        return Response(status, body)

    def _list(self, request: Request) -> Response:
        try:
            offset = int(request.param("offset") or 0)
            limit = int(request.param("limit") or 100)
        except ValueError:
            return self.error(400, "offset and limit must be integers")
        if offset < 0 or limit < 1:
            return self.error(400, "offset must be >= 0 and limit >= 1")
        wanted = request.param("filter")
        matching = [k for k in self.keys.values() if not wanted or wanted in k.username]
        return Response(200, [k.info() for k in matching[offset : offset + limit]])

    def _create(self, request: Request) -> Response:
        body = request.json() or {}
        user_id = body.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            return self.error(400, "user_id is required")
        if user_id not in self.users:
            return self.error(404, f"user {user_id} not found")
        expires = None
        if body.get("expires_in") is not None:
            interval = self._interval(body["expires_in"])
            if interval is None:
                return self.error(400, "expires_in must be an interval such as '30 days'")
            expires = datetime.now(UTC) + interval
        key = self.add_key(
            user_id,
            body.get("name"),
            collection_id=body.get("collection_id"),
            expires_at=expires,
            inactivity_interval=body.get("inactivity_interval"),
        )
        return Response(201, {"secret_key": key.secret, "api_key": key.info()})

    def _interval(self, text: Any) -> timedelta | None:
        units = _DOCUMENTED_UNITS if self.fidelity.documented_units_only else set(_UNITS)
        return _interval(text, units)

    def _find(self, request: Request, missing: int = 404) -> _Key | Response:
        key = self.keys.get(request.path_params["key_id"])
        if key is None:
            return self.error(missing, "API key not found")
        return key

    def _active(self, request: Request) -> _Key | Response:
        key = self._find(request)
        if not isinstance(key, Response) and not key.is_active and self.fidelity.inactive_conflict:
            return self.error(409, "API key is already inactive")
        return key

    def _deactivate(self, request: Request) -> Response:
        key = self._active(request)
        if isinstance(key, Response):
            return key
        key.is_active = False
        return Response(204)

    def _delete(self, request: Request) -> Response:
        key = self._find(request, missing=self.fidelity.delete_missing_status)
        if isinstance(key, Response):
            return key
        del self.keys[key.id]
        return Response(204)

    def _expire(self, request: Request) -> Response:
        key = self._active(request)
        if isinstance(key, Response):
            return key
        expires_in = (request.json() or {}).get("expires_in")
        if expires_in is None:
            key.expires_at = None
            return Response(204)
        interval = self._interval(expires_in)
        if interval is None:
            return self.error(400, "expires_in must be an interval such as '30 days'")
        key.expires_at = datetime.now(UTC) + interval
        return Response(204)
