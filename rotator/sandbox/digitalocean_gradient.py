"""Emulator of DigitalOcean's Gradient agent API-key endpoints.

Follows tests/contracts/digitalocean-gradient-agent-api-keys.openapi.yaml:
``{"api_key_info": ...}`` bodies, page/per_page pagination with ``links`` and
``meta``, ``{"id", "message"}`` errors, and both documented rate limits: the
burst limit (250 calls a minute; over it, 429 with ``retry-after``) and the
hourly limit (5,000 calls an hour; over it, 429 without ``retry-after``).
Every response carries ``ratelimit-limit``, ``ratelimit-remaining`` and
``ratelimit-reset`` (epoch seconds when the oldest counted call expires), which
describe the hourly limit.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rotator.sandbox.server import Emulator, Request, Response, Route, Slot, timestamp

_ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "server_error",
    503: "service_unavailable",
}


@dataclass
class _Key:
    uuid: str
    name: str
    secret: str
    created_at: str
    created_by: str

    def info(self, *, with_secret: bool, deleted_at: str | None = None) -> dict[str, Any]:
        info = {
            "uuid": self.uuid,
            "name": self.name,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }
        if with_secret:
            info["secret_key"] = self.secret
        if deleted_at:
            info["deleted_at"] = deleted_at
        return info


class DigitalOceanGradientEmulator(Emulator):
    vendor = "digitalocean_gradient"
    openapi_spec = "digitalocean-gradient-agent-api-keys.openapi.yaml"
    operations: ClassVar[dict[str, tuple[str, str]]] = {
        "create": ("POST", r"/api_keys$"),
        "regenerate": ("PUT", r"/regenerate$"),
        "revoke": ("DELETE", r"/api_keys/[^/]+$"),
        "verify": ("GET", r"/api_keys$"),
    }
    default_per_page = 20
    max_per_page = 200

    def __init__(
        self,
        tokens: set[str] | None = None,
        *,
        burst_limit: int = 250,
        burst_window: float = 60.0,
        hourly_limit: int = 5000,
    ) -> None:
        super().__init__(tokens)
        self.agents: dict[str, dict[str, _Key]] = {}
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self.hourly_limit = hourly_limit
        #: Seconds added to the wall clock, so a test can age the calls counted so far.
        self.clock_offset = 0.0
        #: How many calls were answered 429 (burst or hourly).
        self.limited = 0
        #: Times of the calls counted in the last hour (the latest are the burst window).
        self._calls: list[float] = []

    # -- state helpers ----------------------------------------------------------

    def add_agent(self, agent_uuid: str | None = None) -> str:
        agent_uuid = agent_uuid or str(uuid.uuid4())
        with self.lock:
            self.agents.setdefault(agent_uuid, {})
        return agent_uuid

    def add_key(self, agent_uuid: str, name: str, key_uuid: str | None = None) -> _Key:
        key_uuid = key_uuid or str(uuid.uuid4())
        key = _Key(key_uuid, name, secrets.token_urlsafe(32), timestamp(), "4242")
        with self.lock:
            self.agents[agent_uuid][key.uuid] = key
        return key

    def seed_slot(self) -> Slot:
        agent = self.add_agent()
        key = self.add_key(agent, "existing production key")
        return Slot({"agent_uuid": agent, "api_key_uuid": key.uuid}, key.uuid, key.secret)

    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        agent = self.add_agent(selector["agent_uuid"])
        if not selector.get("api_key_uuid"):
            return Slot(dict(selector), "", "")
        key = self.add_key(agent, "existing key", selector["api_key_uuid"])
        return Slot(dict(selector), key.uuid, key.secret)

    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        with self.lock:
            keys = self.agents.get(selector["agent_uuid"], {}).values()
            return any(secrets.compare_digest(k.secret, secret) for k in keys)

    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        with self.lock:
            return list(self.agents.get(selector["agent_uuid"], {}))

    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        with self.lock:
            self.agents.get(selector["agent_uuid"], {}).pop(key_id, None)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "agents": {
                    agent: [key.info(with_secret=False) for key in keys.values()]
                    for agent, keys in self.agents.items()
                }
            }

    # -- contract ---------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = "/v2/gen-ai/agents/{agent_uuid}/api_keys"
        return [
            Route("GET", base, self._list),
            Route("POST", base, self._create),
            Route("PUT", base + "/{api_key_uuid}", self._update),
            Route("DELETE", base + "/{api_key_uuid}", self._delete),
            Route("PUT", base + "/{api_key_uuid}/regenerate", self._regenerate),
        ]

    def error(self, status: int, message: str) -> Response:
        return Response(status, {"id": _ERROR_IDS.get(status, "error"), "message": message})

    def authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.tokens

    def _recent(self, now: float) -> list[float]:
        with self.lock:
            self._calls = [t for t in self._calls if now - t < 3600]
            return list(self._calls)

    def _now(self) -> float:
        return time.time() + self.clock_offset

    def decorate(self, request: Request, response: Response) -> None:
        now = self._now()
        calls = self._recent(now)
        reset = calls[0] + 3600 if calls else now
        response.headers.update(
            {
                "ratelimit-limit": str(self.hourly_limit),
                "ratelimit-remaining": str(max(0, self.hourly_limit - len(calls))),
                # Epoch seconds on the vendor's clock; a moved test clock is moved back here
                # so a client computes the same wait the emulator will enforce.
                "ratelimit-reset": str(math.ceil(reset - self.clock_offset)),
            }
        )

    def _count_call(self) -> Response | None:
        now = self._now()
        calls = self._recent(now)
        if len(calls) >= self.hourly_limit:
            self.limited += 1
            return self.error(429, "API rate limit exceeded.")
        burst = [t for t in calls if now - t < self.burst_window]
        if len(burst) >= self.burst_limit:
            self.limited += 1
            response = self.error(429, "API rate limit exceeded.")
            wait = self.burst_window - (now - burst[0])
            response.headers["retry-after"] = str(max(1, math.ceil(wait)))
            return response
        with self.lock:
            self._calls.append(now)
        return None

    def _agent(self, request: Request) -> dict[str, _Key] | Response:
        limited = self._count_call()
        if limited is not None:
            return limited
        keys = self.agents.get(request.path_params["agent_uuid"])
        if keys is None:
            return self.error(404, "The resource you were accessing could not be found.")
        return keys

    def _key(self, request: Request) -> tuple[dict[str, _Key], _Key] | Response:
        keys = self._agent(request)
        if isinstance(keys, Response):
            return keys
        key = keys.get(request.path_params["api_key_uuid"])
        if key is None:
            return self.error(404, "The resource you were accessing could not be found.")
        return keys, key

    def _list(self, request: Request) -> Response:
        keys = self._agent(request)
        if isinstance(keys, Response):
            return keys
        try:
            page = max(1, int(request.param("page") or 1))
            per_page = int(request.param("per_page") or self.default_per_page)
        except ValueError:
            return self.error(400, "page and per_page must be integers")
        per_page = min(max(1, per_page), self.max_per_page)
        items = list(keys.values())
        pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        path = f"/v2/gen-ai/agents/{request.path_params['agent_uuid']}/api_keys"
        links: dict[str, str] = {}
        if page < pages:
            links["next"] = f"{path}?page={page + 1}&per_page={per_page}"
            links["last"] = f"{path}?page={pages}&per_page={per_page}"
        if page > 1:
            links["first"] = f"{path}?page=1&per_page={per_page}"
            links["previous"] = f"{path}?page={page - 1}&per_page={per_page}"
        body: dict[str, Any] = {
            "api_key_infos": [key.info(with_secret=False) for key in chunk],
            "meta": {"page": page, "pages": pages, "total": len(items)},
        }
        if links:
            # A list that fits one page carries no links at all (contracts README).
            body["links"] = {"pages": links}
        return Response(200, body)

    def _create(self, request: Request) -> Response:
        keys = self._agent(request)
        if isinstance(keys, Response):
            return keys
        body = request.json() or {}
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return self.error(400, "name is required")
        key = self.add_key(request.path_params["agent_uuid"], name)
        return Response(200, {"api_key_info": key.info(with_secret=True)})

    def _update(self, request: Request) -> Response:
        found = self._key(request)
        if isinstance(found, Response):
            return found
        _, key = found
        name = (request.json() or {}).get("name")
        if isinstance(name, str) and name:
            key.name = name
        return Response(200, {"api_key_info": key.info(with_secret=False)})

    def _delete(self, request: Request) -> Response:
        found = self._key(request)
        if isinstance(found, Response):
            return found
        keys, key = found
        del keys[key.uuid]
        return Response(200, {"api_key_info": key.info(with_secret=False, deleted_at=timestamp())})

    def _regenerate(self, request: Request) -> Response:
        found = self._key(request)
        if isinstance(found, Response):
            return found
        _, key = found
        key.secret = secrets.token_urlsafe(32)
        return Response(200, {"api_key_info": key.info(with_secret=True)})
