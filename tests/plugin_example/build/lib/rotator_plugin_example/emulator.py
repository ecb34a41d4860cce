"""A loopback emulator of the Example Keys API, built on rotator's emulator base class."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rotator.testing import Emulator, Request, Response, Route, Slot


@dataclass
class _Key:
    id: str
    name: str
    secret: str

    def info(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


class ExampleKeysEmulator(Emulator):
    vendor = "example_keys"
    base_path = "/v1"
    operations: ClassVar[dict[str, tuple[str, str]]] = {
        "create": ("POST", r"/keys$"),
        "revoke": ("DELETE", r"/keys/[^/]+$"),
        "verify": ("GET", r"/whoami$"),
    }

    def __init__(self, tokens: set[str] | None = None) -> None:
        super().__init__(tokens)
        self.accounts: dict[str, dict[str, _Key]] = {}

    # -- test and sandbox helpers ---------------------------------------------------

    def add_key(self, account: str, name: str) -> _Key:
        key = _Key(f"key-{uuid.uuid4().hex[:12]}", name, secrets.token_hex(16))
        self.accounts.setdefault(account, {})[key.id] = key
        return key

    def seed_slot(self) -> Slot:
        with self.lock:
            account = f"svc-{uuid.uuid4().hex[:8]}"
            key = self.add_key(account, "existing key")
            return Slot({"account": account, "key_id": key.id}, key.id, key.secret)

    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        with self.lock:
            self.accounts.setdefault(str(selector["account"]), {})
            return Slot(dict(selector), "", "")

    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        with self.lock:
            keys = self.accounts.get(str(selector["account"]), {}).values()
            return any(secrets.compare_digest(key.secret, secret) for key in keys)

    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        with self.lock:
            return list(self.accounts.get(str(selector["account"]), {}))

    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        with self.lock:
            self.accounts.get(str(selector["account"]), {}).pop(key_id, None)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                account: [key.info() for key in keys.values()]
                for account, keys in self.accounts.items()
            }

    # -- the API ------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/accounts/{account}/keys", self._list),
            Route("POST", "/accounts/{account}/keys", self._create),
            Route("DELETE", "/accounts/{account}/keys/{id}", self._delete),
            Route("GET", "/whoami", self._whoami),
        ]

    def error(self, status: int, message: str) -> Response:
        return Response(status, {"message": message})

    def authenticated(self, request: Request) -> bool:
        # whoami is authenticated by the key it asks about, not the management token.
        return request.path.endswith("/whoami") or super().authenticated(request)

    def _account(self, request: Request) -> dict[str, _Key] | None:
        return self.accounts.get(request.path_params["account"])

    def _list(self, request: Request) -> Response:
        keys = self._account(request)
        if keys is None:
            return self.error(404, "no such account")
        page, size = int(request.param("page") or 1), int(request.param("page_size") or 100)
        items = list(keys.values())
        chunk = items[(page - 1) * size : page * size]
        more = page * size < len(items)
        return Response(
            200, {"keys": [k.info() for k in chunk], "next_page": page + 1 if more else None}
        )

    def _create(self, request: Request) -> Response:
        account = request.path_params["account"]
        if account not in self.accounts:
            return self.error(404, "no such account")
        name = (request.json() or {}).get("name")
        if not isinstance(name, str) or not name:
            return self.error(422, "name is required")
        key = self.add_key(account, name)
        return Response(201, {**key.info(), "secret": key.secret})

    def _delete(self, request: Request) -> Response:
        keys = self._account(request)
        if keys is None or keys.pop(request.path_params["id"], None) is None:
            return self.error(404, "no such key")
        return Response(204)

    def _whoami(self, request: Request) -> Response:
        secret = request.headers.get("authorization", "").removeprefix("Bearer ")
        for keys in self.accounts.values():
            for key in keys.values():
                if secrets.compare_digest(key.secret, secret):
                    return Response(200, {"key_id": key.id})
        return self.error(401, "unknown key")
