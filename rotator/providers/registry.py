"""The provider registry: a configuration ``type`` name to the class that serves it.

Adding a vendor adds one line here. Modules are imported on first use so that
``rotator --help`` does not pay for every vendor client.
"""

from __future__ import annotations

import importlib
from typing import Any

from rotator.providers.base import Provider

PROVIDER_CLASSES: dict[str, str] = {
    "digitalocean_gradient": "rotator.providers.digitalocean_gradient:DigitalOceanGradientProvider",
}


def provider_class(type_name: str) -> type[Provider[Any, Any]]:
    """The ``Provider`` subclass for ``type_name``; ``KeyError`` when none is registered."""
    module_name, class_name = PROVIDER_CLASSES[type_name].split(":")
    cls: type[Provider[Any, Any]] = getattr(importlib.import_module(module_name), class_name)
    return cls
