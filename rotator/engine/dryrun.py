"""What a rotation would do, step by step, with no call made: ``plan`` and ``--dry-run``.

``DryRun`` walks the protocol's state table (steps.py) as ``RotationRun`` does.
Where the run calls the vendor, it collects the provider's planned calls
instead: the very request objects the run sends, built by the same provider
code. Vault's part and the waits are said in words, and a call that depends on
what the run finds then (a key an interrupted mint may have left) says so.
It calls nothing and reads nothing: it starts from the rotation row, or from
the policy for a fresh rotation, both given by the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from rotator.audit.store import RotationRecord
from rotator.config.loader import Policy
from rotator.durations import format_setting
from rotator.engine.steps import Steps
from rotator.providers.base import Provider, Strategy
from rotator.providers.request import PlannedCall
from rotator.timestamps import format_time
from rotator.vocabulary import State

#: One line of a dry run: a vendor call, or what happens in Vault or on the clock.
Line = str | PlannedCall

#: Stand-ins for what only the run will know.
NEW_KEY_ID = "<new key id>"
UNKNOWN_OLD_KEY = "<key id from Vault metadata, if any>"


@dataclass(frozen=True)
class Facts:
    """The rotation a dry run starts from: its row, or what a fresh one would hold."""

    state: State
    strategy: Strategy
    old_key_id: str | None
    new_key_id: str | None
    new_key_name: str | None
    emergency: bool
    grace_until: datetime | None = None
    vault_base_version: int | None = None
    new_key_first_used_at: datetime | None = None

    @classmethod
    def fresh(
        cls, policy: Policy, provider: Provider[Any, Any], old_key_id: str | None, emergency: bool
    ) -> Facts:
        """As ``Engine._plan`` writes a new row (its rotation id yet unknown)."""
        create = policy.strategy is Strategy.CREATE_THEN_DELETE
        name = provider.key_name(policy.selector, policy.name, "<rot-id>") if create else None
        return cls(
            state=State.PLANNED,
            strategy=policy.strategy,
            old_key_id=old_key_id,
            new_key_id=None if create else old_key_id,
            new_key_name=name,
            emergency=emergency,
        )

    @classmethod
    def of(cls, rotation: RotationRecord, *, emergency: bool) -> Facts:
        """As the row stands; an emergency cuts its grace short (``Engine._make_emergency``)."""
        return cls(
            state=State(rotation.state),
            strategy=Strategy(rotation.strategy),
            old_key_id=rotation.old_key_id,
            new_key_id=rotation.new_key_id,
            new_key_name=rotation.new_key_name,
            emergency=emergency or rotation.emergency,
            grace_until=None if emergency else rotation.grace_until,
            vault_base_version=rotation.vault_base_version,
            new_key_first_used_at=rotation.new_key_first_used_at,
        )


class DryRun(Steps):
    """Each step of the protocol, described instead of taken."""

    def __init__(
        self,
        policy: Policy,
        provider: Provider[Any, Any],
        facts: Facts,
        *,
        vault_path: str,
        staging_path: str,
        now: datetime,
    ) -> None:
        self.policy = policy
        self.provider = provider
        self.facts = facts
        self.state = facts.state
        self.lines: list[Line] = []
        self._vault_path = vault_path
        self._staging_path = staging_path
        self._now = now
        self._conditions: list[str] = []
        # The run holds the new secret in memory once it minted it itself.
        self._secret_in_hand = False
        self._waited = False

    def walk(self) -> list[Line]:
        """Every step from the starting state to the end, as the run takes them."""
        while (step := self.step_for(self.state)) is not None:
            before = self.state
            step()
            if self.state == before:
                raise AssertionError(f"the dry run of {before} did not move on")
        return self.lines

    # -- saying it --------------------------------------------------------------

    def _vendor(self, calls: list[PlannedCall]) -> None:
        condition = " and ".join(self._conditions)
        for call in calls:
            if condition:
                only_if = " and ".join(c for c in (condition, call.only_if) if c)
                call = replace(call, only_if=only_if)
            self.lines.append(call)

    def _say(self, text: str) -> None:
        condition = " and ".join(self._conditions)
        self.lines.append(f"if {condition}: {text}" if condition else text)

    @contextmanager
    def _only_if(self, condition: str) -> Iterator[None]:
        self._conditions.append(condition)
        try:
            yield
        finally:
            self._conditions.pop()

    @property
    def _selector(self) -> Any:
        return self.policy.selector

    @property
    def _old(self) -> str:
        return self.facts.old_key_id or UNKNOWN_OLD_KEY

    @property
    def _regenerate(self) -> bool:
        return self.facts.strategy is Strategy.REGENERATE

    @property
    def _caller_chooses(self) -> bool:
        return self.provider.capabilities.caller_chooses_secret

    def _write(self) -> None:
        self._say(
            f"vault: write {self._vault_path} field {self.policy.vault.field} (check-and-set on "
            "the version read just before), then its custom_metadata"
        )

    # -- the steps ----------------------------------------------------------------

    def mint(self) -> None:
        paths = f"{self._vault_path} and its metadata"
        if self._caller_chooses:
            paths = f"{self._vault_path}, {self._staging_path} and their metadata"
        self._say(
            f"vault: check the token may write {paths} (sys/capabilities-self); stop here if not"
        )
        if self._regenerate:
            self._vendor(self.provider.plan_regenerate(self._selector, self._old))
            # The regenerated secret is all there is: it is written at once, held in memory.
            self._write()
            self.state = State.STORED
            return
        if self._caller_chooses:
            self._say(
                f"vault: generate the new secret and stage it at {self._staging_path} (a "
                "secret this rotation staged before is used again)"
            )
        name = self.facts.new_key_name or ""
        self._vendor(
            self.provider.plan_create(self._selector, name, replacing=self.facts.old_key_id)
        )
        self._secret_in_hand = True
        self.state = State.MINTED

    def recover_minting(self) -> None:
        if self._regenerate:
            self._say(
                f"vault: read {self._vault_path}; a version this rotation labelled holds its "
                "regenerated secret and is kept"
            )
            with self._only_if("Vault holds no secret of this rotation"):
                self.mint()
            return
        name = self.facts.new_key_name
        self._vendor(self.provider.plan_list(self._selector))
        found = f"a key named {name} is listed"
        lost = f"{found} and no secret is staged for it" if self._caller_chooses else found
        with self._only_if(lost):
            self._vendor(self.provider.plan_revoke(self._selector, f"<id of the key named {name}>"))
        if self._caller_chooses:
            with self._only_if(f"no key named {name} is listed with its secret staged"):
                self.mint()
            self._secret_in_hand = True
            self.state = State.MINTED
            return
        self.mint()

    def store_or_recover(self) -> None:
        if self._secret_in_hand:
            self._write()
            self.state = State.STORED
            return
        self._say(
            f"vault: read {self._vault_path}; a current version holding this rotation's secret "
            "is kept"
        )
        lost = "Vault holds no secret of this rotation"
        if self._caller_chooses:
            with self._only_if(f"{lost} but one is staged at {self._staging_path}"):
                self._write()
            lost += " and none is staged"
        with self._only_if(lost):
            if not self._regenerate and self.facts.new_key_id:
                self._vendor(self.provider.plan_revoke(self._selector, self.facts.new_key_id))
            self.mint()
            if self.state is State.MINTED:
                self.store_or_recover()
        self.state = State.STORED

    def verify(self) -> None:
        if self.provider.capabilities.can_verify:
            key_id = self.facts.new_key_id or NEW_KEY_ID
            self._vendor(self.provider.plan_verify(self._selector, key_id))
        else:
            self._say(f"verify: none ({self.policy.provider_type} offers no verification)")
        self.state = State.VERIFIED

    def start_grace(self) -> None:
        if self._regenerate:
            self._say("finish: regenerated in place, no old key to revoke")
            self.state = State.COMPLETED
            return
        emergency = self.facts.emergency
        with self._old_key_known():
            grace = timedelta(0) if emergency else self.policy.grace_period
            self._vendor(self.provider.plan_prepare_grace(self._selector, self._old, grace))
            if self.policy.revoke_when_unused is not None and not emergency:
                self._vendor(self._usage_check("counted when grace starts"))
            words = "0s (emergency)" if emergency else format_setting(self.policy.grace_period)
            self._say(f"wait {words} (grace period, persisted deadline)")
        self._waited = True
        self.state = State.GRACE

    def revoke(self) -> None:
        until = self.facts.grace_until
        waits_here = not self._waited and until is not None and self._now < until
        # A run that finds grace not over stops, and a later one goes on: each run in grace
        # looks for the new key's first use until the vendor reports one.
        stops = waits_here or (
            self._waited and not self.facts.emergency and self.policy.grace_period > timedelta(0)
        )
        first_use = self._first_use_check()
        with self._old_key_known():
            if stops:
                self._vendor(first_use)
                first_use = [
                    replace(call, only_if="the new key's first use is not recorded yet")
                    for call in first_use
                ]
            if waits_here:
                assert until is not None
                self._say(f"wait until {format_time(until)} (grace period, persisted deadline)")
            self._vendor(first_use)
            if self.policy.revoke_when_unused is not None and not self.facts.emergency:
                self._vendor(self._usage_check("a use in the last quiet period extends grace"))
            self._vendor(self.provider.plan_revoke(self._selector, self._old))
        self.state = State.COMPLETED

    def _old_key_known(self) -> AbstractContextManager[None]:
        """An old key known only once the run reads Vault's metadata; without one, the run
        finishes with nothing to revoke."""
        if self.facts.old_key_id is not None:
            return nullcontext()
        return self._only_if("Vault's metadata names the current key")

    def _first_use_check(self) -> list[PlannedCall]:
        """The listing a run in grace makes to see whether consumers use the new key yet."""
        if not self.provider.capabilities.reports_usage or self.facts.new_key_first_used_at:
            return []
        key_id = self.facts.new_key_id or NEW_KEY_ID
        calls = self.provider.plan_find_key(self._selector, key_id)
        note = "the new key's first use, if the vendor reports one"
        return [replace(call, note=", ".join(n for n in (call.note, note) if n)) for call in calls]

    def _usage_check(self, note: str) -> list[PlannedCall]:
        calls = self.provider.plan_find_key(self._selector, self._old)
        return [replace(call, note=", ".join(n for n in (call.note, note) if n)) for call in calls]

    def roll_back(self) -> None:
        base = self.facts.vault_base_version
        self._say(
            f"vault: make version {base} of {self._vault_path} current again, if the new key's "
            "version still is"
        )
        if self.facts.new_key_id:
            self._vendor(self.provider.plan_revoke(self._selector, self.facts.new_key_id))
        self.state = State.ROLLED_BACK


def shown(lines: list[Line]) -> tuple[str, ...]:
    """The lines as ``plan`` and ``--dry-run`` print them; secrets masked."""
    return tuple(line if isinstance(line, str) else line.shown() for line in lines)
