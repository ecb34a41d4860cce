"""The provider catalogue: a configuration ``type`` to its ``Provider`` class.

Vendors register in the entry point group ``rotator.providers`` (name ->
``module:Class``): rotator's own in its pyproject.toml, a plugin in its
package's, so a platform team adds a vendor without forking. A ``type`` with
a colon (``mypackage.module:Class``) names a class directly, for a provider
that is importable but not registered.

Every class is checked before use (``check_provider_class``): a malformed
plugin is refused with what to fix, not met half-way through a rotation.
Looking a name up reads rotator's own distribution first and scans every
installed package only for a name that is not built in, so a configuration of
built-in vendors costs no scan.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from rotator.errors import ConfigError
from rotator.providers.base import Capabilities, KeySelector, Provider, ProviderSettings, Strategy

GROUP = "rotator.providers"
_OWN_DISTRIBUTION = "rotator"


class ProviderPluginError(ConfigError):
    """A provider type names no class, or a class that breaks the provider contract."""


@dataclass(frozen=True)
class ProviderOrigin:
    """Where a provider class comes from, as ``validate`` names it."""

    target: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution == _OWN_DISTRIBUTION

    def __str__(self) -> str:
        if self.distribution is None:
            return f"{self.target} (not from an installed package)"
        return f"{self.distribution} {self.version} ({self.target})"


def own_entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points rotator's own distribution declares in ``group``."""
    try:
        entries = metadata.distribution(_OWN_DISTRIBUTION).entry_points
    except metadata.PackageNotFoundError:
        return {}
    return {entry.name: entry for entry in entries if entry.group == group}


def find_entry_point(group: str, name: str) -> metadata.EntryPoint | None:
    """``name`` in ``group``: rotator's own first, then any installed package's."""
    own = own_entry_points(group).get(name)
    if own is not None:
        return own
    return next(iter(metadata.entry_points(group=group, name=name)), None)


def known_names(group: str) -> list[str]:
    """Every name registered in ``group`` by any installed package."""
    return sorted({entry.name for entry in metadata.entry_points(group=group)})


#: The built-in vendors' type names, as rotator's pyproject.toml registers them.
VENDORS: tuple[str, ...] = tuple(sorted(own_entry_points(GROUP)))


def provider_origin(type_name: str) -> ProviderOrigin:
    """Where ``type_name``'s class comes from; raises ``ProviderPluginError`` for an unknown one."""
    if ":" in type_name:
        module = type_name.split(":")[0].split(".")[0]
        distributions = metadata.packages_distributions().get(module, [])
        if not distributions:
            return ProviderOrigin(type_name)
        return ProviderOrigin(type_name, distributions[0], metadata.version(distributions[0]))
    entry = find_entry_point(GROUP, type_name)
    if entry is None and not VENDORS:
        raise ProviderPluginError(
            f"unknown provider type {type_name!r}: rotator's own vendors are not registered "
            "either, so its installation is incomplete; reinstall it (pip install -e . in a "
            "checkout) so that its entry points are written"
        )
    if entry is None:
        raise ProviderPluginError(
            f"unknown provider type {type_name!r}; use one of: {', '.join(known_names(GROUP))}, "
            "install the package that provides it, or name its class as 'package.module:Class'"
        )
    dist = entry.dist
    return ProviderOrigin(entry.value, dist.name if dist else None, dist.version if dist else None)


@functools.cache
def provider_class(type_name: str) -> type[Provider[Any, Any]]:
    """The checked ``Provider`` subclass ``type_name`` names; ``ProviderPluginError`` otherwise."""
    origin = provider_origin(type_name)
    try:
        loaded = load_target(origin.target)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ProviderPluginError(
            f"provider {type_name!r} from {origin} cannot be loaded ({exc}); check that its "
            "package is installed in the environment rotator runs in"
        ) from None
    problems = contract_problems(loaded)
    if problems:
        raise ProviderPluginError(
            f"provider {type_name!r} from {origin} breaks the provider contract "
            f"(docs/providers.md): {'; '.join(problems)}. Fix the plugin, or pin a version of "
            "it that works"
        )
    cls: type[Provider[Any, Any]] = loaded
    return cls


def load_target(target: str) -> Any:
    """The object a ``module:attribute`` string names."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ValueError(f"{target!r} is not of the form 'package.module:Class'")
    return getattr(importlib.import_module(module_name), name)


def contract_problems(cls: object) -> list[str]:
    """What is wrong with ``cls`` as a provider class, in words a plugin author can act on."""
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        return ["it is not a subclass of rotator.providers.base.Provider"]
    problems = []
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        problems.append(f"it does not implement {missing}")
    if not isinstance(getattr(cls, "type_name", None), str) or not cls.type_name:
        problems.append("type_name must be a non-empty string")
    problems += _model_problems(cls, "settings_model", ProviderSettings)
    problems += _model_problems(cls, "selector_model", KeySelector)
    key_field = cls.key_id_field
    selector = getattr(cls, "selector_model", None)
    fields = (
        selector.model_fields
        if isinstance(selector, type) and issubclass(selector, BaseModel)
        else {}
    )
    if key_field is not None and key_field not in fields:
        problems.append(f"key_id_field {key_field!r} is not a field of selector_model")
    problems += _capability_problems(cls)
    return problems


def _model_problems(cls: type[Provider[Any, Any]], attribute: str, base: type[Any]) -> list[str]:
    model = getattr(cls, attribute, None)
    if isinstance(model, type) and issubclass(model, base):
        return []
    return [f"{attribute} must be a subclass of rotator.providers.base.{base.__name__}"]


def _missing(cls: type[Provider[Any, Any]], promise: str, operation: str) -> list[str]:
    """The methods behind an optional operation a class promises but leaves out."""
    names = (f"{operation}_key", f"plan_{operation}")
    missing = [n for n in names if getattr(cls, n) is getattr(Provider, n)]
    return (
        [f"{promise} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"]
        if missing
        else []
    )


def _capability_problems(cls: type[Provider[Any, Any]]) -> list[str]:
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, Capabilities):
        return ["capabilities must be a rotator.providers.base.Capabilities"]
    problems = []
    strategies = caps.strategies
    if not strategies or not all(isinstance(s, Strategy) for s in strategies):
        problems.append("capabilities.strategies must be a non-empty set of Strategy members")
    elif Strategy.REGENERATE in strategies:
        problems += _missing(cls, "capabilities.strategies offers regenerate", "regenerate")
    if not isinstance(caps.can_verify, bool):
        problems.append("capabilities.can_verify must be True or False")
    elif caps.can_verify:
        problems += _missing(cls, "capabilities.can_verify is True", "verify")
    # A created key's name is a prefix, a dash and 8 hex digits: anything shorter cannot hold it.
    if not isinstance(caps.max_name_length, int) or caps.max_name_length < 16:
        problems.append("capabilities.max_name_length must be a whole number of at least 16")
    if not isinstance(caps.revocation_lag, timedelta) or caps.revocation_lag < timedelta(0):
        problems.append("capabilities.revocation_lag must be a timedelta of zero or more")
    return problems
