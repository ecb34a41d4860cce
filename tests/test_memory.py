"""The daemon hands the memory a configuration load freed back, and keeps none of the parse."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert

from rotator.audit.store import AuditStore
from rotator.audit.tables import policy_state
from rotator.config.loader import parse_config
from rotator.config.model import PolicyConfig
from rotator.config.yaml_source import YamlDocument, load_yaml
from rotator.memory import release_freed_memory
from rotator.metrics import PausedCollector, PolicyReading, Reading, StateCollector
from rotator.providers.registry import provider_class
from rotator.secret import Secret
from tests.support.configs import config_text


@pytest.fixture(autouse=True)
def _tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials ``config_text`` references."""
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value-123")


class _Node:
    partner: _Node


def test_release_freed_memory_collects_garbage_cycles_at_once() -> None:
    gc.disable()
    try:
        first, second = _Node(), _Node()
        first.partner, second.partner = second, first
        watched = weakref.ref(first)
        del first, second
        release_freed_memory()
        assert watched() is None
    finally:
        gc.enable()


def test_a_loaded_configuration_keeps_no_yaml_document_alive() -> None:
    config = parse_config(config_text(), "rotator.yaml", provider_class)
    release_freed_memory()
    assert config.policies
    assert not [o for o in gc.get_objects() if isinstance(o, YamlDocument)]


def test_policies_without_consumers_share_one_default_instead_of_one_each() -> None:
    policy = {"provider": "do", "schedule": {"every": "30d"}, "vault": {"path": "apps/web"}}
    first, second = PolicyConfig.model_validate(policy), PolicyConfig.model_validate(policy)
    assert first.consumers is second.consumers
    assert first.consumers.refresh is None


def test_policies_without_hooks_share_one_default_instead_of_one_each() -> None:
    policy = {"provider": "do", "schedule": {"every": "30d"}, "vault": {"path": "apps/web"}}
    first, second = PolicyConfig.model_validate(policy), PolicyConfig.model_validate(policy)
    assert first.hooks is second.hooks
    assert first.hooks.after_store == first.hooks.after_revoke == []


def _fleet(count: int) -> str:
    """A configuration of ``count`` one-line policies, as large fleets write them."""
    policies = "\n".join(
        f"  p{n}: {{provider: do, key: {{agent_uuid: a{n}, api_key_uuid: k{n}}}, "
        f"schedule: {{every: 30d}}, vault: {{path: fleet/p{n}}}}}"
        for n in range(count)
    )
    return config_text("policies:\n" + policies)


def _peak_of(build: Callable[[], object]) -> tuple[object, int]:
    """What ``build`` returns, and the most memory it held at once (tracemalloc's count)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = build()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checking_policies_holds_one_policy_s_temporaries_at_a_time() -> None:
    # The daemon's RSS keeps the parse's peak: checked models of every policy held beside the
    # YAML data would double it. One policy is checked and converted at a time instead.
    text = _fleet(2_000)
    _, yaml_peak = _peak_of(lambda: load_yaml(text, "rotator.yaml"))
    config, parse_peak = _peak_of(lambda: parse_config(text, "rotator.yaml", provider_class))
    assert len(config.policies) == 2_000  # type: ignore[attr-defined]
    assert parse_peak < 1.5 * yaml_peak


def test_policies_with_equal_schedules_share_one() -> None:
    config = parse_config(_fleet(2), "rotator.yaml", provider_class)
    assert config.policies["p0"].schedule is config.policies["p1"].schedule


def test_equal_mapping_keys_of_a_yaml_file_are_one_string() -> None:
    data = load_yaml("a: {path: x}\nb: {path: y}\n", "rotator.yaml").data
    first, second = (next(iter(data[name])) for name in ("a", "b"))
    assert first == second == "path"
    assert first is second


def test_a_loaded_policy_holds_under_a_kilobyte() -> None:
    # 10,000 policies stay in the daemon for its lifetime: each holds its own names and
    # selector, and shares its provider, schedule and defaults with the others.
    text = _fleet(2_000)
    parse_config(text, "rotator.yaml", provider_class)  # imports and caches, not counted
    gc.collect()
    tracemalloc.start()
    try:
        config = parse_config(text, "rotator.yaml", provider_class)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(config.policies) == 2_000
    assert held / 2_000 < 1_000


def test_registering_the_metrics_collectors_reads_no_policy_state() -> None:
    # Without describe(), prometheus-client runs a whole scrape when a collector registers:
    # every policy's state read and turned into samples (a 20 MB peak at 10,000 policies).
    reads: list[str] = []

    def read_state() -> Reading:
        reads.append("state")
        return Reading(policies=[], ready={}, unsealed_events=0, oldest_unsealed=None)

    def read_holds() -> dict[str, bool]:
        reads.append("holds")
        return {}

    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(read_state, lambda: datetime.now(UTC)))
    registry.register(PausedCollector(read_holds))
    assert reads == []
    assert "rotator_key_age_seconds" in generate_latest(registry).decode()


def test_a_scrape_holds_one_family_of_policy_samples_at_a_time() -> None:
    # At 10,000 policies every family's samples held at once were a 20 MB peak at each
    # scrape, which the daemon's RSS then kept; one family at a time is a tenth of that.
    now = datetime.now(UTC)
    since = now - timedelta(days=3)
    reading = Reading(
        policies=[
            PolicyReading(
                policy=f"policy-{n:05d}",
                key_since=since,
                last_success=since,
                next_due=now + timedelta(days=27),
                interval_seconds=30 * 86_400.0,
                window_seconds=0.0,
                grace_until=None,
                needs_attention=False,
            )
            for n in range(2_000)
        ],
        ready={"database": True},
        unsealed_events=0,
        oldest_unsealed=None,
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(lambda: reading, lambda: now))
    generate_latest(registry)  # imports and caches, not counted
    gc.collect()
    tracemalloc.start()
    try:
        text = generate_latest(registry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The text itself is held about three times over (prometheus-client's lines, their
    # join, its encoding), and one family's samples add under one more; every family's
    # samples held at once came to over six times.
    assert peak < 5 * len(text)


def test_reading_every_policy_state_holds_no_row_beside_its_state(
    migrated_sqlite_url: str,
) -> None:
    # A daemon reads every policy's state at start and at every scrape; its RSS keeps the
    # peak. The rows are turned into states one at a time, not all fetched first.
    store = AuditStore.open(Secret(migrated_sqlite_url))
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        connection.execute(
            insert(policy_state),
            [
                {"policy": f"p{n}", "current_key_id": f"k{n}", "adopted_at": now, "updated_at": now}
                for n in range(2_000)
            ],
        )
    store.all_policy_states()  # imports and compiles, not counted
    gc.collect()
    tracemalloc.start()
    try:
        states = store.all_policy_states()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.dispose()
    assert len(states) == 2_000
    assert peak < 1.3 * held
