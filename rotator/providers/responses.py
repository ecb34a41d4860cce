"""Vendor answers are untrusted input: read them within bounds, parse them into typed shapes.

A vendor (or a proxy, captive portal or attacker in front of it) may answer
with HTML, a truncated or endless body, JSON of another shape, or pages
without end. Every answer is read here within a size cap and a deadline for
the whole call, and parsed against a pydantic model of the fields rotator
uses; whatever does not fit becomes a ``VendorError`` that names the vendor,
the call and what was wrong. Messages never quote the body: a create's body
may hold the new secret.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import from_json

from rotator.errors import VendorError, VendorUnavailable
from rotator.secret import scrub

if TYPE_CHECKING:
    import httpx

#: Largest vendor answer read; a page of 200 keys is a few tens of kilobytes.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Most pages read for one listing; at 100 keys a page, far beyond any real key slot.
MAX_PAGES = 100
_MAX_PROBLEMS = 3
_MAX_PLAIN_DETAIL = 200

ShapeT = TypeVar("ShapeT")


class VendorBody(BaseModel):
    """A JSON object from a vendor: fields rotator does not use are ignored, used ones typed."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def read_body(response: httpx.Response, *, where: str, deadline: float, timeout: float) -> bytes:
    """The body of a streamed ``response``, refused if over ``MAX_BODY_BYTES`` or ``deadline``.

    ``deadline`` is a ``time.monotonic()`` instant for the whole call, so a
    server trickling a byte at a time cannot hold the call past it.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _oversized(where)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _oversized(where)
        if time.monotonic() > deadline:
            raise VendorUnavailable(
                f"{where}: the answer did not arrive within the {timeout:g}s timeout (the "
                "vendor sent it too slowly); raise the provider's timeout if it is just slow"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(response: httpx.Response, shape: type[ShapeT], *, where: str) -> ShapeT:
    """``response``'s JSON body as ``shape``; a ``VendorError`` if it is not JSON of that shape.

    pydantic parses the bytes itself: no dict of the whole body is built first, and
    JSON nested past its limit is invalid JSON, not a ``RecursionError``.
    """
    try:
        return _adapter(shape).validate_json(response.content)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors(include_input=False)):
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise VendorError(
                f"{where} answered {response.status_code} with a body that is not JSON ({kind}, "
                f"{len(response.content)} bytes); a proxy or an outage page may stand in front "
                "of the vendor: check base_url, then retry"
            ) from None
        raise VendorError(
            f"{where} answered JSON rotator does not understand ({_problems(exc)}); the vendor's "
            "API may have changed: check base_url and rotator's version"
        ) from None


def json_body(response: httpx.Response) -> Any:
    """``response``'s body as JSON values, for reading an error; ``ValueError`` if it is not
    JSON (nesting past pydantic's limit included)."""
    return from_json(response.content)


def plain_detail(response: httpx.Response) -> str:
    """An error answer that is not JSON, for a message: short plain text, else described.

    An HTML page or another large body says nothing an operator can act on, and
    quoting it would carry whatever it holds into logs and the audit trail.
    """
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "untyped"
    text = response.text.strip()
    if kind == "text/plain" and len(text) <= _MAX_PLAIN_DETAIL:
        return text or response.reason_phrase
    return f"{response.reason_phrase} (a {kind} body of {len(response.content)} bytes)"


def pages(where: str) -> Iterator[int]:
    """Page numbers 0, 1, ... up to ``MAX_PAGES``; asking for one more is a ``VendorError``."""
    yield from range(MAX_PAGES)
    raise VendorError(
        f"{where} still had more pages after {MAX_PAGES}; the vendor's paging may be broken "
        "(it keeps offering a next page), or the key slot holds far more keys than rotator "
        "expects: clean it up in the vendor's console"
    )


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(shape: type[ShapeT]) -> TypeAdapter[ShapeT]:
    adapter: TypeAdapter[ShapeT] | None = _ADAPTERS.get(shape)
    if adapter is None:
        adapter = _ADAPTERS[shape] = TypeAdapter(shape)
    return adapter


def _problems(exc: ValidationError) -> str:
    # Only where and what: pydantic's "input" would quote the body, which may hold a secret.
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:_MAX_PROBLEMS]
    ]
    more = exc.error_count() - len(problems)
    return scrub("; ".join(problems) + (f"; and {more} more" if more > 0 else ""))


def _oversized(where: str) -> VendorError:
    return VendorError(
        f"{where} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MiB; rotator refuses "
        "answers that large: check base_url points at the vendor's API"
    )
