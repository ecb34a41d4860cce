"""The provider contract (rotator.testing) run against every built-in vendor, in process."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.providers.base import Provider
from rotator.providers.registry import VENDORS, provider_class
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import Emulator
from rotator.testing import ProviderContract

#: Settings that make each vendor's provider list in pages of two (Latitude.sh does not page).
SMALL_PAGES: dict[str, dict[str, Any]] = {
    "digitalocean_gradient": {"per_page": 2},
    "h2ogpte": {"page_size": 2},
    "scale_agentex": {"page_size": 2},
}


def test_the_four_built_in_vendors_are_registered_through_entry_points() -> None:
    # An install without rotator's entry points would leave the shared suites with no vendors.
    assert VENDORS == ("digitalocean_gradient", "h2ogpte", "latitudesh", "scale_agentex")


class TestBuiltinProviders(ProviderContract):
    @pytest.fixture(params=VENDORS)
    def contract_classes(
        self, request: pytest.FixtureRequest
    ) -> tuple[type[Provider[Any, Any]], type[Emulator], dict[str, Any]]:
        vendor: str = request.param
        return provider_class(vendor), emulator_class(vendor), SMALL_PAGES.get(vendor, {})
