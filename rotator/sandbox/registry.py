"""The emulator catalogue: a provider ``type`` to the emulator of its vendor's API.

Emulators register in the entry point group ``rotator.emulators`` under their
provider's type name, rotator's own in its pyproject.toml and a plugin's in
its package's, so ``rotator sandbox serve`` and the shared test suites reach
a plugin vendor the same way as a built-in one.
"""

from __future__ import annotations

from rotator.errors import ConfigError
from rotator.providers.registry import find_entry_point, known_names, load_target
from rotator.sandbox.server import Emulator

GROUP = "rotator.emulators"


def emulator_class(type_name: str) -> type[Emulator]:
    """The emulator registered for ``type_name``; ``ConfigError`` when there is none."""
    entry = find_entry_point(GROUP, type_name)
    if entry is None:
        raise ConfigError(
            f"no emulator is registered for {type_name!r}; use one of: "
            f"{', '.join(known_names(GROUP))}"
        )
    loaded = load_target(entry.value)
    if not (isinstance(loaded, type) and issubclass(loaded, Emulator)):
        raise ConfigError(f"{entry.value} (emulator of {type_name!r}) is not an Emulator subclass")
    return loaded
