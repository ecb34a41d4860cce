"""The emulators answer as the vendors' real servers do, each behaviour behind a switch.

Facts and their sources are in docs/providers.md. Each test names the real
behaviour; switching it off gives the kinder reading of the published spec.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx
import pytest

from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
from rotator.sandbox.h2ogpte import H2oGpteEmulator
from rotator.sandbox.latitudesh import LatitudeshEmulator
from rotator.sandbox.scale_agentex import ScaleAgentexEmulator
from rotator.sandbox.server import Emulator, EmulatorServer

TOKEN = "fidelity-management-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


E = TypeVar("E", bound=Emulator)


@contextmanager
def served(emulator: E) -> Iterator[tuple[E, httpx.Client]]:
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.vendor_url) as client:
        yield emulator, client


@pytest.fixture
def agentex() -> Iterator[tuple[ScaleAgentexEmulator, httpx.Client]]:
    with served(ScaleAgentexEmulator({TOKEN})) as pair:
        yield pair


AgentexRig = tuple[ScaleAgentexEmulator, httpx.Client]


def test_agentex_validation_errors_use_the_servers_own_body(agentex: AgentexRig) -> None:
    emulator, client = agentex
    _, agent = emulator.add_agent()

    response = client.post("/agent_api_keys", json={"agent_name": agent}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["status_code"] == 10422
    assert set(response.json()) == {"status_code", "message", "data"}


@pytest.mark.parametrize("agents", [{}, {"agent_id": "a", "agent_name": "b"}])
def test_agentex_both_or_neither_agent_is_a_400(
    agentex: AgentexRig, agents: dict[str, str]
) -> None:
    _, client = agentex

    response = client.post("/agent_api_keys", json={"name": "k", **agents}, headers=AUTH)

    assert response.status_code == 400
    assert set(response.json()) == {"message", "code", "data"}


def test_agentex_delete_of_a_missing_key_answers_200(agentex: AgentexRig) -> None:
    _, client = agentex

    response = client.delete("/agent_api_keys/no-such-key", headers=AUTH)

    assert response.status_code == 200
    assert isinstance(response.json(), str)


def test_agentex_unauthenticated_calls_get_a_detail_body(agentex: AgentexRig) -> None:
    _, client = agentex

    response = client.get("/agent_api_keys", params={"agent_name": "x"})

    assert response.status_code == 401
    assert list(response.json()) == ["detail"]


def test_agentex_deleted_key_keeps_working_until_the_cache_expires(agentex: AgentexRig) -> None:
    emulator, client = agentex
    agent_id, _ = emulator.add_agent()
    key = emulator.add_key(agent_id, "k", "external", None)
    assert emulator.check_agent_key(key.api_key)

    client.delete(f"/agent_api_keys/{key.id}", headers=AUTH)

    assert emulator.check_agent_key(key.api_key)
    emulator.advance_clock(301)
    assert not emulator.check_agent_key(key.api_key)


def test_agentex_refused_key_stays_refused_until_the_cache_expires(agentex: AgentexRig) -> None:
    emulator, _ = agentex
    agent_id, _ = emulator.add_agent()
    assert not emulator.check_agent_key("a" * 64)

    emulator.add_key(agent_id, "k", "external", "a" * 64)

    assert not emulator.check_agent_key("a" * 64)
    emulator.advance_clock(301)
    assert emulator.check_agent_key("a" * 64)


def test_agentex_fidelity_switches_restore_the_specs_reading(agentex: AgentexRig) -> None:
    emulator, client = agentex
    emulator.fidelity.delete_missing_ok = False
    emulator.fidelity.agent_choice_400 = False

    missing = client.delete("/agent_api_keys/no-such-key", headers=AUTH)
    neither = client.post("/agent_api_keys", json={"name": "k"}, headers=AUTH)

    assert missing.status_code == 404
    assert neither.status_code == 422


@pytest.fixture
def h2o() -> Iterator[tuple[H2oGpteEmulator, httpx.Client]]:
    with served(H2oGpteEmulator({TOKEN})) as pair:
        yield pair


H2oRig = tuple[H2oGpteEmulator, httpx.Client]


@pytest.mark.parametrize("call", ["deactivate", "expire"])
def test_h2o_changing_an_inactive_key_is_a_409(h2o: H2oRig, call: str) -> None:
    emulator, client = h2o
    user_id, _ = emulator.add_user()
    key = emulator.add_key(user_id, "k", is_active=False)

    if call == "deactivate":
        response = client.post(f"/admin/api_keys/deactivate/{key.id}", headers=AUTH)
    else:
        body = {"expires_in": "30 days"}
        response = client.patch(f"/admin/api_keys/expire/{key.id}", json=body, headers=AUTH)

    assert response.status_code == 409


def test_h2o_delete_of_a_missing_key_is_not_a_404(h2o: H2oRig) -> None:
    _, client = h2o

    response = client.delete("/admin/api_keys/no-such-key", headers=AUTH)

    assert response.status_code in (400, 409)  # the statuses the SDK declares for delete


@pytest.mark.parametrize(("expires_in", "status"), [("90 seconds", 400), ("2 minutes", 204)])
def test_h2o_expiry_takes_only_the_documented_units(
    h2o: H2oRig, expires_in: str, status: int
) -> None:
    emulator, client = h2o
    user_id, _ = emulator.add_user()
    key = emulator.add_key(user_id, "k")

    body = {"expires_in": expires_in}
    response = client.patch(f"/admin/api_keys/expire/{key.id}", json=body, headers=AUTH)

    assert response.status_code == status


def test_h2o_key_created_without_a_name_is_listed_with_a_string_name(h2o: H2oRig) -> None:
    emulator, client = h2o
    user_id, _ = emulator.add_user()

    client.post("/admin/api_keys", json={"user_id": user_id}, headers=AUTH)

    [info] = client.get("/admin/api_keys", headers=AUTH).json()
    assert info["name"] == ""


@pytest.fixture
def latitude() -> Iterator[tuple[LatitudeshEmulator, httpx.Client]]:
    with served(LatitudeshEmulator({TOKEN})) as pair:
        yield pair


LatitudeRig = tuple[LatitudeshEmulator, httpx.Client]
NEW_KEY = {"data": {"type": "api_keys", "attributes": {"name": "k"}}}


@pytest.mark.parametrize(
    ("content_type", "status"), [("application/vnd.api+json", 415), ("application/json", 201)]
)
def test_latitude_bodies_must_be_declared_json(
    latitude: LatitudeRig, content_type: str, status: int
) -> None:
    _, client = latitude
    headers = {"Authorization": TOKEN, "Content-Type": content_type}

    response = client.post("/auth/api_keys", content=json.dumps(NEW_KEY), headers=headers)

    assert response.status_code == status


def test_latitude_key_with_allowed_ips_is_refused_from_elsewhere(latitude: LatitudeRig) -> None:
    emulator, client = latitude
    key = emulator.add_key("k", allowed_ips=["203.0.113.7"])

    response = client.get("/auth/api_keys", headers={"Authorization": key.token})

    assert response.status_code == 401
    assert emulator.accepts({}, key.token)  # consumers on 203.0.113.7 are fine


@pytest.fixture
def digitalocean() -> Iterator[tuple[DigitalOceanGradientEmulator, httpx.Client]]:
    with served(DigitalOceanGradientEmulator({TOKEN}, burst_limit=2, hourly_limit=3)) as pair:
        yield pair


DigitalOceanRig = tuple[DigitalOceanGradientEmulator, httpx.Client]
RATELIMIT_HEADERS = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}


@pytest.mark.parametrize("headers", [AUTH, {}], ids=["authenticated", "refused"])
def test_digitalocean_every_response_carries_ratelimit_headers(
    digitalocean: DigitalOceanRig, headers: dict[str, str]
) -> None:
    _, client = digitalocean

    response = client.get("/v2/gen-ai/agents/no-such-agent/api_keys", headers=headers)

    assert response.status_code in (401, 404)
    assert set(response.headers) >= RATELIMIT_HEADERS


def test_digitalocean_burst_limit_says_retry_after(digitalocean: DigitalOceanRig) -> None:
    emulator, client = digitalocean
    path = f"/v2/gen-ai/agents/{emulator.add_agent()}/api_keys"

    answers = [client.get(path, headers=AUTH) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "retry-after" in answers[-1].headers


def test_digitalocean_hourly_limit_says_only_when_it_resets(
    digitalocean: DigitalOceanRig,
) -> None:
    emulator, client = digitalocean
    emulator.burst_limit = 100
    path = f"/v2/gen-ai/agents/{emulator.add_agent()}/api_keys"

    answers = [client.get(path, headers=AUTH) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "retry-after" not in answers[-1].headers
    assert answers[-1].headers["ratelimit-remaining"] == "0"
    assert int(answers[-1].headers["ratelimit-reset"]) > time.time() + 3500


def test_digitalocean_single_page_list_carries_no_links(digitalocean: DigitalOceanRig) -> None:
    emulator, client = digitalocean
    path = f"/v2/gen-ai/agents/{emulator.add_agent()}/api_keys"

    body = client.get(path, headers=AUTH).json()

    assert "links" not in body
    assert body["meta"]["pages"] == 1
