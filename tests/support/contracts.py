"""Checks every call through an emulator against the vendor's published OpenAPI spec.

Both directions are validated: what rotator sends (request) and what the
emulator answers (response). Violations are collected, and the test fixtures
fail a test that produced any.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from rotator.sandbox.server import Request, Response

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"


@dataclass
class _OpenApiRequest:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@dataclass
class _OpenApiResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


@dataclass
class ContractValidator:
    """A ``Validator`` for ``EmulatorServer`` that records every contract violation."""

    spec_file: str
    #: Statuses the vendor's contract notes document but its spec file leaves out
    #: (e.g. Agentex's 404 and 409): their bodies are not checked against the spec.
    unlisted_statuses: frozenset[int] = frozenset()
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._host, self._openapi = _load(CONTRACTS / self.spec_file)

    def __call__(self, request: Request, response: Response) -> None:
        headers = Headers(dict(request.headers))
        query = ImmutableMultiDict([(k, v) for k, values in request.query.items() for v in values])
        oa_request = _OpenApiRequest(
            host_url=self._host,
            path=request.path,
            method=request.method.lower(),
            body=request.body or None,
            content_type=request.headers.get("content-type", "application/json"),
            parameters=RequestParameters(query=query, header=headers),
        )
        oa_response = _OpenApiResponse(
            status_code=response.status,
            content_type=response.content_type,
            headers=Headers(response.headers),
            data=response.encoded() or None,
        )
        where = f"{request.method} {request.path} -> {response.status}"
        try:
            self._openapi.validate_request(oa_request)
        except Exception as exc:
            self.violations.append(f"request {where}: {_explain(exc)}")
        if response.status in self.unlisted_statuses:
            return
        try:
            self._openapi.validate_response(oa_request, oa_response)
        except Exception as exc:
            self.violations.append(f"response {where}: {_explain(exc)}")


@functools.cache
def _load(path: Path) -> tuple[str, OpenAPI]:
    """The spec's server URL and its validator, read once a session (parsing takes ~0.3 s)."""
    spec = yaml.safe_load(path.read_text())
    servers = spec.get("servers") or [{"url": "http://localhost"}]
    return servers[0]["url"].rstrip("/"), OpenAPI.from_file_path(str(path))


def _explain(exc: BaseException) -> str:
    causes = [str(exc)]
    inner = exc.__cause__
    while inner is not None:
        causes.append(str(inner))
        inner = inner.__cause__
    for err in getattr(exc, "schema_errors", []) or []:
        causes.append(str(getattr(err, "message", err)))
    return " | ".join(causes)
