"""The plugin's own tests: rotator's provider contract, run against the plugin's emulator."""

from typing import Any, ClassVar

from rotator_plugin_example.emulator import ExampleKeysEmulator
from rotator_plugin_example.provider import ExampleKeysProvider

from rotator.testing import ProviderContract


class TestExampleKeys(ProviderContract):
    provider_class = ExampleKeysProvider
    emulator_class = ExampleKeysEmulator
    small_pages: ClassVar[dict[str, Any]] = {"page_size": 2}
