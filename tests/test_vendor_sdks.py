"""Each emulator, driven by its vendor's OFFICIAL Python SDK from PyPI (dev extras).

An SDK parses every answer with the vendor's own models and status rules, so
an emulator kinder or looser than the real server shows up here. Each test
walks a key's life (list, create, rotate where the vendor can, delete) and
checks the SDK sees each change. Where an SDK and the emulator disagreed, the
SDK won unless the server's source says otherwise; docs/providers.md lists
each source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import pydantic
import pytest
import yaml

from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
from rotator.sandbox.h2ogpte import H2oGpteEmulator
from rotator.sandbox.latitudesh import LatitudeshEmulator
from rotator.sandbox.scale_agentex import ScaleAgentexEmulator
from rotator.sandbox.server import Emulator, EmulatorServer

TOKEN = "sdk-interop-management-token"
CONTRACTS = Path(__file__).resolve().parent / "contracts"
E = TypeVar("E", bound=Emulator)


@contextmanager
def serving(emulator: E) -> Iterator[tuple[E, str]]:
    with EmulatorServer(emulator) as server:
        yield emulator, server.vendor_url


# -- DigitalOcean: pydo and gradient ------------------------------------------------


def test_pydo_lists_creates_regenerates_and_deletes_agent_keys() -> None:
    from pydo import Client

    # pydo refuses bearer tokens over plain http unless each call allows it.
    plain_http = {"enforce_https": False}
    with serving(DigitalOceanGradientEmulator({TOKEN})) as (emulator, url):
        slot = emulator.seed_slot()
        agent = slot.selector["agent_uuid"]
        genai = Client(token=TOKEN, endpoint=url).genai

        created = genai.create_agent_api_key(
            agent_uuid=agent, body={"agent_uuid": agent, "name": "sdk"}, **plain_http
        )["api_key_info"]
        listed = genai.list_agent_api_keys(agent_uuid=agent, **plain_http)["api_key_infos"]
        regenerated = genai.regenerate_agent_api_key(
            agent_uuid=agent, api_key_uuid=created["uuid"], **plain_http
        )["api_key_info"]
        genai.delete_agent_api_key(agent_uuid=agent, api_key_uuid=created["uuid"], **plain_http)
        after = genai.list_agent_api_keys(agent_uuid=agent, **plain_http)["api_key_infos"]

    assert created["uuid"] in {k["uuid"] for k in listed}
    assert regenerated["secret_key"] != created["secret_key"]
    assert [k["uuid"] for k in after] == [slot.key_id]


def test_gradient_sdk_strictly_validates_every_agent_key_answer() -> None:
    from gradient import Gradient

    with serving(DigitalOceanGradientEmulator({TOKEN})) as (emulator, url):
        slot = emulator.seed_slot()
        agent = slot.selector["agent_uuid"]
        keys = Gradient(access_token=TOKEN, base_url=url, _strict_response_validation=True)
        keys = keys.agents.api_keys

        created = keys.create(agent, body_agent_uuid=agent, name="sdk").api_key_info
        assert created is not None
        assert created.uuid is not None
        listed = keys.list(agent).api_key_infos or []
        renamed = keys.update(
            created.uuid,
            path_agent_uuid=agent,
            body_agent_uuid=agent,
            body_api_key_uuid=created.uuid,
            name="sdk-renamed",
        ).api_key_info
        regenerated = keys.regenerate(created.uuid, agent_uuid=agent).api_key_info
        deleted = keys.delete(created.uuid, agent_uuid=agent).api_key_info
        after = keys.list(agent).api_key_infos or []

    assert created.uuid in {k.uuid for k in listed}
    assert renamed is not None
    assert renamed.name == "sdk-renamed"
    assert regenerated is not None
    assert regenerated.secret_key not in (None, created.secret_key)
    assert deleted is not None
    assert deleted.deleted_at is not None
    assert [k.uuid for k in after] == [slot.key_id]


# -- H2O GPTe: the generated REST client -----------------------------------------


def test_h2ogpte_rest_client_manages_keys_with_the_statuses_it_declares() -> None:
    from h2ogpte.rest_sync import ApiClient, Configuration
    from h2ogpte.rest_sync.api.api_keys_api import APIKeysApi
    from h2ogpte.rest_sync.exceptions import ConflictException
    from h2ogpte.rest_sync.models import APIKeyCreateRequest, APIKeyUpdateExpiryRequest

    with serving(H2oGpteEmulator({TOKEN})) as (emulator, url):
        slot = emulator.seed_slot()
        user_id, username = slot.selector["user_id"], slot.selector["username"]
        api = APIKeysApi(ApiClient(Configuration(host=url, access_token=TOKEN)))

        named = api.create_api_key_for_user_with_http_info(
            APIKeyCreateRequest(user_id=user_id, name="sdk", expires_in="30 days")
        )
        unnamed = api.create_api_key_for_user_with_http_info(APIKeyCreateRequest(user_id=user_id))
        key_id = named.data.api_key.id
        listed = api.list_all_api_keys_with_http_info(offset=0, limit=100, filter=username)
        expiry = api.update_api_key_expiry_with_http_info(
            key_id, APIKeyUpdateExpiryRequest(expires_in="30 minutes")
        )
        deactivated = api.deactivate_api_key_with_http_info(key_id)
        with pytest.raises(ConflictException):  # the SDK declares 409 for an inactive key
            api.deactivate_api_key_with_http_info(key_id)
        deleted = api.delete_api_key_with_http_info(key_id)
        after = api.list_all_api_keys_with_http_info(offset=0, limit=100, filter=username)

    assert (named.status_code, unnamed.status_code, listed.status_code) == (201, 201, 200)
    assert named.data.secret_key.startswith("sk-")
    assert key_id in {k.id for k in listed.data}
    assert (expiry.status_code, deactivated.status_code, deleted.status_code) == (204, 204, 204)
    assert key_id not in {k.id for k in after.data}


# -- Latitude.sh: latitudesh-python-sdk -------------------------------------------


def test_latitudesh_sdk_lists_creates_rotates_and_deletes_keys() -> None:
    from latitudesh_python_sdk import Latitudesh

    with (
        serving(LatitudeshEmulator({TOKEN})) as (emulator, url),
        Latitudesh(bearer=TOKEN, server_url=url) as sdk,
    ):
        slot = emulator.seed_slot()
        attributes = {"name": "sdk", "read_only": True, "allowed_ips": ["198.51.100.4"]}
        created = sdk.api_keys.create(data={"type": "api_keys", "attributes": attributes}).data
        assert created is not None
        assert created.id is not None
        listed = sdk.api_keys.list().data or []
        rotated = sdk.api_keys.regenerate(
            api_key_id=created.id, data={"type": "api_keys", "id": created.id, "attributes": {}}
        ).data
        sdk.api_keys.delete(api_key_id=created.id)
        after = sdk.api_keys.list().data or []

    assert created.attributes is not None
    assert created.attributes.token
    assert created.id in {k.id for k in listed}
    assert rotated is not None
    assert rotated.attributes is not None
    assert rotated.attributes.token not in (None, created.attributes.token)
    assert [k.id for k in after] == [slot.key_id]


# -- Scale Agentex: agentex-client's transport + models from the server's spec ------


@cache
def agentex_models() -> dict[str, type[pydantic.BaseModel]]:
    """Strict pydantic models built from the spec cut from the Agentex server."""
    spec = yaml.safe_load((CONTRACTS / "scale-agentex-agent-api-keys.openapi.yaml").read_text())
    schemas: dict[str, Any] = spec["components"]["schemas"]

    def annotation(prop: dict[str, Any]) -> Any:
        if "$ref" in prop:
            return annotation(schemas[prop["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in prop:
            options = [annotation(p) for p in prop["anyOf"] if p.get("type") != "null"]
            return Optional[options[0]]  # noqa: UP045 (built at run time)
        if "enum" in prop:
            return Literal[tuple(prop["enum"])]
        if prop.get("format") == "date-time":
            return dt.datetime
        return {"string": str, "integer": int, "boolean": bool}[prop["type"]]

    models = {}
    for name in ("AgentAPIKey", "CreateAPIKeyResponse"):
        schema = schemas[name]
        fields = {
            field: (annotation(prop), ... if field in schema.get("required", []) else None)
            for field, prop in schema["properties"].items()
        }
        config = pydantic.ConfigDict(extra="forbid", strict=False)
        models[name] = pydantic.create_model(name, __config__=config, **fields)  # type: ignore[call-overload]
    return models


def test_agentex_client_manages_agent_keys_parsed_by_the_servers_spec() -> None:
    from agentex import Agentex

    models = agentex_models()
    with serving(ScaleAgentexEmulator({TOKEN})) as (emulator, url):
        agent_id, agent_name = emulator.add_agent()
        client = Agentex(api_key=TOKEN, base_url=url, max_retries=0)
        by_agent = {"params": {"agent_name": agent_name}}

        created = models["CreateAPIKeyResponse"].model_validate(
            client.post(
                "/agent_api_keys",
                cast_to=object,
                body={"name": "sdk", "agent_id": agent_id, "api_key_type": "external"},
            )
        )
        listed = [
            models["AgentAPIKey"].model_validate(item)
            for item in client.get("/agent_api_keys", cast_to=object, options=by_agent)
        ]
        fetched = models["AgentAPIKey"].model_validate(
            client.get(f"/agent_api_keys/{created.id}", cast_to=object)  # type: ignore[attr-defined]
        )
        deleted = client.delete(f"/agent_api_keys/{created.id}", cast_to=str)  # type: ignore[attr-defined]
        after = client.get("/agent_api_keys", cast_to=object, options=by_agent)

    assert created.id in {k.id for k in listed}  # type: ignore[attr-defined]
    assert fetched.name == "sdk"  # type: ignore[attr-defined]
    assert isinstance(deleted, str)
    assert after == []


def test_agentex_client_maps_the_servers_refusals_to_its_errors() -> None:
    import agentex

    with serving(ScaleAgentexEmulator({TOKEN})) as (_, url):
        wrong_token = agentex.Agentex(api_key="not-a-token", base_url=url, max_retries=0)
        right_token = agentex.Agentex(api_key=TOKEN, base_url=url, max_retries=0)

        with pytest.raises(agentex.AuthenticationError):
            wrong_token.get(
                "/agent_api_keys", cast_to=object, options={"params": {"agent_name": "a"}}
            )
        with pytest.raises(agentex.BadRequestError):  # neither agent_id nor agent_name: 400
            right_token.post("/agent_api_keys", cast_to=object, body={"name": "k"})
        with pytest.raises(agentex.NotFoundError):
            right_token.get("/agent_api_keys/no-such-key", cast_to=object)
