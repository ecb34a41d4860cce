"""Emulator of a self-hosted Agentex server's ``/agent_api_keys`` endpoints.

Follows tests/contracts/scale-agentex-agent-api-keys.openapi.yaml and the
server's source (scaleapi/scale-agentex, see docs/providers.md): bare JSON
lists paged by ``limit``/``page_number``, a JSON string on delete, 409 when
(agent, name, type) exists, ``{"message", "code", "data"}`` for errors.
Where the source differs from the published spec, the source wins; each such
behaviour is a switch in ``AgentexFidelity`` so a test can show what the
kinder reading would hide.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rotator.sandbox.server import Emulator, Request, Response, Route, Slot, timestamp

_TYPES = ("internal", "external", "github", "slack")


@dataclass
class _Key:
    id: str
    agent_id: str
    name: str
    api_key_type: str
    api_key: str
    created_at: str

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "created_at": self.created_at,
            "name": self.name,
            "api_key_type": self.api_key_type,
        }


@dataclass
class AgentexFidelity:
    """The real server's behaviours (all on by default); turn one off to get the spec's reading."""

    #: 422 bodies as the server's handler writes them (``app.py``), not FastAPI's default.
    validation_body: bool = True
    #: Both or neither of agent_id/agent_name: 400 from the route, not a 422.
    agent_choice_400: bool = True
    #: DELETE of a missing id: 200, because the use case swallows the miss.
    delete_missing_ok: bool = True
    #: The auth middleware's 401 body is ``{"detail": ...}``.
    auth_detail_body: bool = True
    #: Agent-key checks are cached per process, successes and failures alike
    #: (``authentication_cache.py``); 0 turns the cache off.
    key_check_cache_seconds: float = 300.0


@dataclass
class _CachedCheck:
    accepted: bool
    until: float


class ScaleAgentexEmulator(Emulator):
    vendor = "scale_agentex"
    openapi_spec = "scale-agentex-agent-api-keys.openapi.yaml"
    # The server's source answers these; the published spec lists only 200 and 422.
    openapi_unlisted_statuses = frozenset({401, 404, 409, 429, 500, 502, 503})
    operations: ClassVar[dict[str, tuple[str, str]]] = {
        "create": ("POST", r"^/agent_api_keys$"),
        "verify": ("GET", r"^/agent_api_keys/[^/]+$"),
        "revoke": ("DELETE", r"^/agent_api_keys/[^/]+$"),
    }

    def __init__(self, tokens: set[str] | None = None) -> None:
        super().__init__(tokens)
        self.agents: dict[str, str] = {}
        self.keys: dict[str, _Key] = {}
        self.fidelity = AgentexFidelity()
        #: Seconds added to the monotonic clock, so a test can let the key-check cache expire.
        self.clock_offset = 0.0
        self._checks: dict[str, _CachedCheck] = {}

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    def _now(self) -> float:
        return time.monotonic() + self.clock_offset

    def add_agent(self, agent_id: str | None = None, name: str | None = None) -> tuple[str, str]:
        agent_id = agent_id or str(uuid.uuid4())
        with self.lock:
            self.agents[agent_id] = name or f"agent-{agent_id[:8]}"
        return agent_id, self.agents[agent_id]

    def add_key(
        self,
        agent_id: str,
        name: str,
        api_key_type: str,
        value: str | None,
        key_id: str | None = None,
    ) -> _Key:
        key = _Key(
            key_id or str(uuid.uuid4()),
            agent_id,
            name,
            api_key_type,
            value or secrets.token_hex(32),
            timestamp(),
        )
        with self.lock:
            self.keys[key.id] = key
        return key

    def seed_slot(self) -> Slot:
        agent_id, agent_name = self.add_agent()
        key = self.add_key(agent_id, "existing key", "external", None)
        return Slot({"agent_name": agent_name, "api_key_id": key.id}, key.id, key.api_key)

    def seed_selector(self, selector: Mapping[str, Any]) -> Slot:
        agent_id, _ = self.add_agent(selector.get("agent_id"), selector.get("agent_name"))
        if not selector.get("api_key_id"):
            return Slot(dict(selector), "", "")
        key_type = selector.get("api_key_type", "external")
        key = self.add_key(agent_id, "existing key", key_type, None, selector["api_key_id"])
        return Slot(dict(selector), key.id, key.api_key)

    def _agent_of(self, selector: Mapping[str, Any]) -> str | None:
        if selector.get("agent_id"):
            return str(selector["agent_id"])
        names = {name: agent for agent, name in self.agents.items()}
        return names.get(selector.get("agent_name", ""))

    def accepts(self, selector: Mapping[str, Any], secret: str) -> bool:
        with self.lock:
            agent = self._agent_of(selector)
            return any(
                k.agent_id == agent and secrets.compare_digest(k.api_key, secret)
                for k in self.keys.values()
            )

    def check_agent_key(self, secret: str) -> bool:
        """Whether a running server accepts ``secret`` as an agent key, through its cache.

        ``accepts`` answers for a server with a cold cache; this one remembers
        each answer for ``key_check_cache_seconds``, as the real server does, so
        a deleted key keeps working (and a refused one stays refused) that long.
        """
        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = self._now()
        with self.lock:
            cached = self._checks.get(digest)
            if cached is not None and cached.until > now:
                return cached.accepted
            accepted = any(secrets.compare_digest(k.api_key, secret) for k in self.keys.values())
            ttl = self.fidelity.key_check_cache_seconds
            if ttl > 0:
                self._checks[digest] = _CachedCheck(accepted, now + ttl)
            return accepted

    def live_key_ids(self, selector: Mapping[str, Any]) -> list[str]:
        with self.lock:
            agent = self._agent_of(selector)
            return [k.id for k in self.keys.values() if k.agent_id == agent]

    def remove_key(self, selector: Mapping[str, Any], key_id: str) -> None:
        with self.lock:
            self.keys.pop(key_id, None)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"agents": dict(self.agents), "keys": [k.info() for k in self.keys.values()]}

    # -- contract ---------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/agent_api_keys", self._list),
            Route("POST", "/agent_api_keys", self._create),
            Route("GET", "/agent_api_keys/{id}", self._get),
            Route("DELETE", "/agent_api_keys/{id}", self._delete),
        ]

    def error(self, status: int, message: str) -> Response:
        return Response(status, {"message": message, "code": status, "data": None})

    def unauthorized(self, message: str) -> Response:
        if self.fidelity.auth_detail_body:
            return Response(401, {"detail": message})
        return self.error(401, message)

    def _invalid(self, loc: list[str | int], message: str, kind: str) -> Response:
        if self.fidelity.validation_body:
            text = f"[{{'type': '{kind}', 'loc': {tuple(loc)!r}, 'msg': '{message}'}}]"
            return Response(422, {"status_code": 10422, "message": text, "data": None})
        return Response(422, {"detail": [{"loc": loc, "msg": message, "type": kind}]})

    def _resolve_agent(self, agent_id: Any, agent_name: Any) -> str | Response:
        if (agent_id is None) == (agent_name is None):
            message = "exactly one of 'agent_id' or 'agent_name' must be provided"
            if self.fidelity.agent_choice_400:
                return self.error(400, message)
            return self._invalid(["body"], message, "value_error")
        agent = self._agent_of({"agent_id": agent_id, "agent_name": agent_name})
        if agent is None or agent not in self.agents:
            return self.error(404, f"agent {agent_id or agent_name} not found")
        return agent

    def _list(self, request: Request) -> Response:
        try:
            limit = int(request.param("limit") or 50)
            page = int(request.param("page_number") or 1)
        except ValueError:
            return self._invalid(
                ["query", "limit"], "Input should be a valid integer", "int_parsing"
            )
        if not 1 <= limit <= 1000 or page < 1:
            return self._invalid(["query", "limit"], "limit must be 1..1000", "less_than_equal")
        agent = self._resolve_agent(request.param("agent_id"), request.param("agent_name"))
        if isinstance(agent, Response):
            return agent
        items = [k.info() for k in self.keys.values() if k.agent_id == agent]
        return Response(200, items[(page - 1) * limit : page * limit])

    def _create(self, request: Request) -> Response:
        body = request.json() or {}
        if not isinstance(body.get("name"), str):
            return self._invalid(["body", "name"], "Field required", "missing")
        api_key_type = body.get("api_key_type", "external")
        if api_key_type not in _TYPES:
            return self._invalid(
                ["body", "api_key_type"], "Input should be one of the enum", "enum"
            )
        agent = self._resolve_agent(body.get("agent_id"), body.get("agent_name"))
        if isinstance(agent, Response):
            return agent
        for key in self.keys.values():
            if (key.agent_id, key.name, key.api_key_type) == (agent, body["name"], api_key_type):
                return self.error(409, f"API key {body['name']!r} already exists for this agent")
        key = self.add_key(agent, body["name"], api_key_type, body.get("api_key"))
        return Response(200, {**key.info(), "api_key": key.api_key})

    def _get(self, request: Request) -> Response:
        key = self.keys.get(request.path_params["id"])
        if key is None:
            return self.error(404, "API key not found")
        return Response(200, key.info())

    def _delete(self, request: Request) -> Response:
        key_id = request.path_params["id"]
        if self.keys.pop(key_id, None) is None and not self.fidelity.delete_missing_ok:
            return self.error(404, "API key not found")
        return Response(200, f"Agent API key with ID {key_id} deleted")
