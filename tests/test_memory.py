"""The daemon hands the memory a configuration load freed back, and keeps none of the parse."""

from __future__ import annotations

import gc
import weakref

import pytest

from rotator.config.loader import parse_config
from rotator.config.model import PolicyConfig
from rotator.config.yaml_source import YamlDocument
from rotator.memory import release_freed_memory
from rotator.providers.registry import provider_class
from tests.support.configs import config_text


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


def test_a_loaded_configuration_keeps_no_yaml_document_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value-123")
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
