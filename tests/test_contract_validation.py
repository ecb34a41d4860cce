"""The contract validator itself catches what breaks a vendor's published spec."""

from __future__ import annotations

from rotator.providers.registry import VENDORS
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import Request, Response
from tests.support.contracts import CONTRACTS, ContractValidator
from tests.support.rig import contract_for

DO_SPEC = "digitalocean-gradient-agent-api-keys.openapi.yaml"
PATH = "/v2/gen-ai/agents/a1/api_keys"


def request(method: str = "GET", path: str = PATH, body: bytes = b"") -> Request:
    return Request(method, path, {}, {"authorization": "Bearer t"}, body)


def test_a_conforming_exchange_passes() -> None:
    validator = ContractValidator(DO_SPEC)
    validator(request(), Response(200, {"api_key_infos": [], "meta": {"page": 1}}))
    assert validator.violations == []


def test_a_response_field_of_the_wrong_type_is_a_violation() -> None:
    validator = ContractValidator(DO_SPEC)
    validator(request(), Response(200, {"api_key_infos": "not-a-list"}))
    assert any(v.startswith("response GET") for v in validator.violations)


def test_an_error_body_missing_its_required_fields_is_a_violation() -> None:
    validator = ContractValidator(DO_SPEC)
    validator(request(), Response(404, {"error": "nope"}))
    assert validator.violations


def test_a_request_to_an_undocumented_path_is_a_violation() -> None:
    validator = ContractValidator(DO_SPEC)
    validator(request(path="/v2/gen-ai/agents/a1/keys"), Response(404, {"id": "x", "message": "y"}))
    assert any(v.startswith("request") for v in validator.violations)


def test_every_published_spec_is_named_by_its_vendors_emulator() -> None:
    named = {emulator_class(vendor).openapi_spec for vendor in VENDORS} - {None}

    assert named == {path.name for path in CONTRACTS.glob("*.yaml")}


def test_the_rig_validates_a_vendor_against_the_spec_its_emulator_names() -> None:
    validator = contract_for(emulator_class("scale_agentex"))

    assert validator is not None
    assert validator.spec_file == "scale-agentex-agent-api-keys.openapi.yaml"
    assert 404 in validator.unlisted_statuses
    assert contract_for(emulator_class("latitudesh")) is None
