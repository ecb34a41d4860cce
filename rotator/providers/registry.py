"""The vendor registry: a configuration ``type`` name to its provider and its emulator.

Adding a vendor adds one entry here (plus its provider and emulator modules).
Modules are imported on first use so that ``rotator --help`` does not pay for
every vendor client.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.providers.base import Provider

if TYPE_CHECKING:
    from rotator.sandbox.server import Emulator


@dataclass(frozen=True)
class VendorEntry:
    provider: str
    emulator: str


VENDORS: dict[str, VendorEntry] = {
    "digitalocean_gradient": VendorEntry(
        provider="rotator.providers.digitalocean_gradient:DigitalOceanGradientProvider",
        emulator="rotator.sandbox.digitalocean_gradient:DigitalOceanGradientEmulator",
    ),
    "h2ogpte": VendorEntry(
        provider="rotator.providers.h2ogpte:H2oGpteProvider",
        emulator="rotator.sandbox.h2ogpte:H2oGpteEmulator",
    ),
    "scale_agentex": VendorEntry(
        provider="rotator.providers.scale_agentex:ScaleAgentexProvider",
        emulator="rotator.sandbox.scale_agentex:ScaleAgentexEmulator",
    ),
    "latitudesh": VendorEntry(
        provider="rotator.providers.latitudesh:LatitudeshProvider",
        emulator="rotator.sandbox.latitudesh:LatitudeshEmulator",
    ),
}


def _load(target: str) -> Any:
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)


@functools.cache
def provider_class(type_name: str) -> type[Provider[Any, Any]]:
    """The ``Provider`` subclass for ``type_name``; ``KeyError`` when none is registered."""
    cls: type[Provider[Any, Any]] = _load(VENDORS[type_name].provider)
    return cls


def emulator_class(type_name: str) -> type[Emulator]:
    """The sandbox emulator of ``type_name``'s vendor API."""
    cls: type[Emulator] = _load(VENDORS[type_name].emulator)
    return cls
