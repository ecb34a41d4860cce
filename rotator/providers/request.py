"""The request object a provider operation builds: ``VendorHttp`` sends it, ``plan`` shows it.

As in octoDNS's plan -> apply, the object ``rotate now --dry-run`` and ``plan``
print is the very one the run hands to the HTTP layer, so a description cannot
drift from the call. A secret in a body (a key value rotator chose) and the
credential a call authenticates with stay ``Secret``s inside the request:
revealed only when it is sent, masked whenever it is shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from rotator.secret import Secret

#: How a secret in a body is shown.
MASKED = "<secret>"
#: Stands in, in a plan, for a secret only the run will have (a new key, a generated value).
PLANNED_SECRET = Secret("")


@dataclass(frozen=True)
class VendorRequest:
    """One HTTP call to a vendor, relative to the provider's base URL."""

    method: str
    path: str
    params: tuple[tuple[str, str | int], ...] = ()
    #: The JSON body; ``Secret`` values anywhere in it are revealed only on the wire.
    body: Any = None
    #: Headers beyond authentication (a content type); never a secret.
    headers: tuple[tuple[str, str], ...] = ()
    #: Authenticate with this key instead of the provider's token (a check of a new key).
    credential: Secret | None = None
    #: Whether a 5xx or a timeout may be repeated; ``None``: as the method says.
    idempotent: bool | None = None

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        credential: Secret | None = None,
        idempotent: bool | None = None,
    ) -> VendorRequest:
        return cls(
            method,
            path,
            tuple((params or {}).items()),
            body,
            tuple((headers or {}).items()),
            credential,
            idempotent,
        )

    def json(self) -> Any:
        """The body as sent: secrets revealed."""
        return _revealed(self.body)

    def shown(self) -> str:
        """The call in one line for people: method, path, query, body; secrets masked."""
        text = f"{self.method} {self.path}"
        if self.params:
            text += "?" + urlencode(self.params, safe="<>")
        if self.body is not None:
            text += " " + json.dumps(self.body, default=_masked)
        if self.credential is not None:
            text += " (sent with the new key)"
        return text


@dataclass(frozen=True)
class PlannedCall:
    """A request an operation sends when all goes well, as ``plan`` shows it."""

    request: VendorRequest
    #: The first page of a listing that goes on while pages come back full.
    every_page: bool = False
    #: A condition only the run can tell (a key that may or may not exist then).
    only_if: str = ""
    #: What the request leaves out that the run fills in (values read from the vendor).
    note: str = ""

    def shown(self) -> str:
        text = self.request.shown()
        for extra in ("every page" if self.every_page else "", self.note):
            if extra:
                text += f" ({extra})"
        if self.only_if:
            text += f" (only if {self.only_if})"
        return text


def _revealed(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    return value


def _masked(value: object) -> str:
    if isinstance(value, Secret):
        return MASKED
    raise TypeError(f"{type(value).__name__} is not JSON")
