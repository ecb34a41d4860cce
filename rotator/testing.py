"""The provider contract suite, for rotator's own vendors and for plugins alike.

A test module subclasses ``ProviderContract`` and names its provider and
emulator classes; pytest then runs every contract test against the emulator
served on loopback, calling the ``Provider`` methods directly, in process.
Among them: every operation sends exactly the requests its ``plan_*`` method
builds, which ``plan`` and ``rotate now --dry-run`` print. A plugin author gets
the same guarantees as a built-in vendor::

    from rotator.testing import ProviderContract

    class TestAcme(ProviderContract):
        provider_class = AcmeProvider
        emulator_class = AcmeEmulator
        small_pages = {"page_size": 2}

The emulator base class and its server are re-exported here, so a plugin's
emulator and its tests need nothing else from rotator's internals. Requires
pytest (a test dependency, not a runtime one).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pytest

from rotator.errors import (
    VendorAuthError,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorRateLimited,
    VendorUnavailable,
)
from rotator.providers.base import KeySelector, MintedKey, Provider, Strategy
from rotator.providers.request import PlannedCall
from rotator.sandbox.server import Emulator, EmulatorServer, Request, Response, Route, Slot
from rotator.secret import Secret

__all__ = [
    "CONTRACT_TOKEN",
    "ContractRig",
    "Emulator",
    "EmulatorServer",
    "ProviderContract",
    "Request",
    "Response",
    "Route",
    "Slot",
    "sent_as_planned",
]

#: The management token the emulator accepts and the provider presents.
CONTRACT_TOKEN = "contract-management-token"  # noqa: S105 - the emulator's, not a real one

T = TypeVar("T")

#: How each status a vendor may answer is reported, whatever the vendor.
ERROR_CLASSES: dict[int, type[VendorError]] = {
    400: VendorError,
    401: VendorAuthError,
    403: VendorAuthError,
    404: VendorNotFound,
    409: VendorConflict,
    422: VendorError,
    429: VendorRateLimited,
    500: VendorUnavailable,
    503: VendorUnavailable,
}


def sent_as_planned(
    planned: Sequence[PlannedCall], made: Sequence[tuple[str, str]], base_path: str = ""
) -> bool:
    """Whether the calls an emulator received (``EmulatorServer.log``: method and path, in
    order) are the ``planned`` ones: a listing planned for every page may take several
    calls, a call planned with a condition (``only_if``) may not come at all, and a
    stand-in such as ``<new key id>`` matches any one path segment."""
    if not planned:
        return not made
    first, rest = planned[0], planned[1:]
    if first.only_if and sent_as_planned(rest, made, base_path):
        return True
    parts = re.split(r"(<[^>]+>)", first.request.path)
    path = "".join("[^/]+" if part.startswith("<") else re.escape(part) for part in parts)
    regex = re.compile(f"^{re.escape(base_path)}{path}$")
    taken = 0
    while taken < len(made) and made[taken][0] == first.request.method:
        if not regex.match(made[taken][1]):
            return False
        taken += 1
        if sent_as_planned(rest, made[taken:], base_path):
            return True
        if not first.every_page:
            return False
    return False


@dataclass
class ContractRig:
    """One emulator on loopback, a provider pointed at it, and a seeded key slot."""

    emulator: Emulator
    server: EmulatorServer
    provider: Provider[Any, Any]
    slot: Slot
    selector: KeySelector

    def can(self, strategy: Strategy) -> bool:
        return strategy in self.provider.capabilities.strategies

    def create(self, name: str | None = None) -> MintedKey:
        """A new key by ``create_key``, with a secret of rotator's if the vendor wants one."""
        caps = self.provider.capabilities
        secret = self.provider.generate_secret() if caps.caller_chooses_secret else None
        name = name or self.provider.key_name(self.selector, "contract", uuid.uuid4().hex)
        return self.provider.create_key(
            self.selector, name, secret, replacing=self.slot.key_id or None
        )

    def mint(self) -> MintedKey:
        """A new key by whichever strategy the vendor offers, preferring create."""
        if self.can(Strategy.CREATE_THEN_DELETE):
            return self.create()
        return self.provider.regenerate_key(self.selector, self.slot.key_id)

    def listed_ids(self) -> set[str]:
        return {key.key_id for key in self.provider.list_keys(self.selector)}

    def sends(self, planned: list[PlannedCall], operation: Callable[[], T]) -> T:
        """Run ``operation`` and check it sent exactly the ``planned`` requests."""
        before = len(self.server.log)
        result = operation()
        made = self.server.log[before:]
        shown = "\n".join(call.shown() for call in planned)
        assert sent_as_planned(planned, made, self.emulator.base_path), (
            f"planned:\n{shown}\nsent: {made}"
        )
        return result


class ProviderContract:
    """What every provider must do against its vendor, checked against its emulator.

    Set ``provider_class`` and ``emulator_class`` in a subclass, or override the
    ``contract_classes`` fixture to parametrise over several vendors.
    """

    provider_class: ClassVar[type[Provider[Any, Any]] | None] = None
    emulator_class: ClassVar[type[Emulator] | None] = None
    #: Provider settings that make it list in pages of at most 2 keys, so paging is exercised.
    small_pages: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def contract_classes(
        self,
    ) -> tuple[type[Provider[Any, Any]], type[Emulator], dict[str, Any]]:
        """The provider class, its emulator class and its small-page settings."""
        if self.provider_class is None or self.emulator_class is None:
            pytest.fail("set provider_class and emulator_class on the ProviderContract subclass")
        return self.provider_class, self.emulator_class, self.small_pages

    @pytest.fixture
    def rig(
        self, contract_classes: tuple[type[Provider[Any, Any]], type[Emulator], dict[str, Any]]
    ) -> Iterator[ContractRig]:
        provider_class, emulator_class, small_pages = contract_classes
        emulator = emulator_class({CONTRACT_TOKEN})
        with EmulatorServer(emulator) as server:
            settings = provider_class.settings_model.model_validate(
                {
                    "type": provider_class.type_name,
                    "token": Secret(CONTRACT_TOKEN),
                    "base_url": server.vendor_url,
                    **small_pages,
                }
            )
            provider = provider_class(settings, Secret(CONTRACT_TOKEN))
            slot = emulator.seed_slot()
            selector = provider_class.selector_model.model_validate(slot.selector)
            try:
                yield ContractRig(emulator, server, provider, slot, selector)
            finally:
                provider.close()

    def test_the_seeded_key_is_listed(self, rig: ContractRig) -> None:
        assert rig.slot.key_id in rig.listed_ids()

    def test_a_created_key_is_listed_under_its_name(self, rig: ContractRig) -> None:
        if not rig.can(Strategy.CREATE_THEN_DELETE):
            pytest.skip("the vendor cannot create keys")
        name = rig.provider.key_name(rig.selector, "contract", uuid.uuid4().hex)

        minted = rig.create(name)

        listed = {key.key_id: key for key in rig.provider.list_keys(rig.selector)}
        assert listed[minted.key.key_id].name == name
        assert rig.provider.is_ours(rig.selector, "contract", listed[minted.key.key_id])

    def test_a_regenerated_key_keeps_its_id_and_gets_a_new_secret(self, rig: ContractRig) -> None:
        if not rig.can(Strategy.REGENERATE):
            pytest.skip("the vendor cannot regenerate keys")

        minted = rig.provider.regenerate_key(rig.selector, rig.slot.key_id)

        assert minted.key.key_id == rig.slot.key_id
        assert minted.secret.reveal() != rig.slot.secret
        assert rig.emulator.accepts(rig.slot.selector, minted.secret.reveal())

    def test_revoking_twice_succeeds(self, rig: ContractRig) -> None:
        rig.provider.revoke_key(rig.selector, rig.slot.key_id)
        rig.provider.revoke_key(rig.selector, rig.slot.key_id)

        assert rig.slot.key_id not in rig.listed_ids()
        assert rig.slot.key_id not in rig.emulator.live_key_ids(rig.slot.selector)

    def test_a_revoked_key_no_longer_authenticates(self, rig: ContractRig) -> None:
        minted = rig.mint()
        rig.provider.revoke_key(rig.selector, minted.key.key_id)

        assert not rig.emulator.accepts(rig.slot.selector, minted.secret.reveal())

    def test_verify_passes_for_a_new_key(self, rig: ContractRig) -> None:
        if not rig.provider.capabilities.can_verify:
            pytest.skip("the vendor offers no way to verify a key")

        assert rig.provider.verify_key(rig.selector, rig.mint())

    def test_verify_fails_for_a_removed_key(self, rig: ContractRig) -> None:
        if not rig.provider.capabilities.can_verify:
            pytest.skip("the vendor offers no way to verify a key")
        minted = rig.mint()
        rig.emulator.remove_key(rig.slot.selector, minted.key.key_id)

        assert not rig.provider.verify_key(rig.selector, minted)

    def test_every_page_is_listed(self, rig: ContractRig) -> None:
        if not rig.can(Strategy.CREATE_THEN_DELETE):
            pytest.skip("the vendor cannot create keys, so the slot cannot span pages")
        created = {rig.create().key.key_id for _ in range(5)}

        assert created | {rig.slot.key_id} <= rig.listed_ids()

    def test_every_operation_sends_the_requests_it_plans(self, rig: ContractRig) -> None:
        """``plan`` and ``--dry-run`` show what the ``plan_*`` methods build: the very requests."""
        provider, selector = rig.provider, rig.selector
        rig.sends(provider.plan_list(selector), lambda: provider.list_keys(selector))
        if rig.can(Strategy.CREATE_THEN_DELETE):
            name = provider.key_name(selector, "contract", uuid.uuid4().hex)
            replacing = rig.slot.key_id or None
            minted = rig.sends(
                provider.plan_create(selector, name, replacing=replacing), lambda: rig.create(name)
            )
        else:
            key_id = rig.slot.key_id
            minted = rig.sends(
                provider.plan_regenerate(selector, key_id),
                lambda: provider.regenerate_key(selector, key_id),
            )
        new_id = minted.key.key_id
        if provider.capabilities.can_verify:
            rig.sends(
                provider.plan_verify(selector, new_id),
                lambda: provider.verify_key(selector, minted),
            )
        rig.sends(
            provider.plan_revoke(selector, new_id), lambda: provider.revoke_key(selector, new_id)
        )

    @pytest.mark.parametrize("status", sorted(ERROR_CLASSES))
    def test_every_error_status_is_mapped(self, rig: ContractRig, status: int) -> None:
        operation = "create" if rig.can(Strategy.CREATE_THEN_DELETE) else "regenerate"
        method, path = rig.emulator.operations[operation]
        # Retry-After 0 lets the HTTP layer spend its 429 retries without waiting.
        rig.server.fail(method, path, status=status, times=100, retry_after=0)

        with pytest.raises(VendorError) as raised:
            rig.mint()

        assert type(raised.value) is ERROR_CLASSES[status]
        assert str(status) in str(raised.value)
        assert CONTRACT_TOKEN not in str(raised.value)
