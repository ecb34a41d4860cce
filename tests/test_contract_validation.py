"""The contract validator itself catches what breaks a vendor's published spec."""

from __future__ import annotations

from rotator.sandbox.server import Request, Response
from tests.support.contracts import ContractValidator

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
