"""What each vendor does beyond the shared suites: its own selectors, overlap and limits."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.config.loader import parse_config
from rotator.errors import ConfigError, VendorError, VendorUnavailable
from rotator.providers.base import MintedKey
from rotator.providers.registry import VENDORS, provider_class
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import Emulator, EmulatorServer
from rotator.secret import Secret
from tests.support.rig import MANAGEMENT_TOKEN, Rig

RigFactory = Callable[[str], Rig]

PROVIDERS = """
vault: {address: "http://127.0.0.1:8200", auth: {method: token, token: "${T}"}}
providers:
  h2o: {type: h2ogpte, base_url: "https://h2o.example.com/api/v1", token: "${T}"}
  agentex: {type: scale_agentex, base_url: "https://agentex.example.com", token: "${T}"}
  latitude: {type: latitudesh, token: "vault:rotator/latitude#token"}
policies:
"""


def load(policy: str) -> object:
    text = PROVIDERS + textwrap.indent(textwrap.dedent(policy).strip(), "  ") + "\n"
    return parse_config(text, "rotator.yaml", provider_class)


def refused(policy: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(policy)
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "token-value-123")


Client = tuple[Emulator, EmulatorServer, Any]


@pytest.fixture
def client() -> Iterator[Callable[[str], Client]]:
    """An emulator served on loopback and, in process, the provider pointed at it."""
    opened: list[tuple[EmulatorServer, Any]] = []

    def build(vendor: str, **extra: object) -> Client:
        emulator = emulator_class(vendor)({MANAGEMENT_TOKEN})
        server = EmulatorServer(emulator).start()
        cls = provider_class(vendor)
        settings = cls.settings_model.model_validate(
            {
                "type": vendor,
                "token": Secret(MANAGEMENT_TOKEN),
                "base_url": server.vendor_url,
                **extra,
            }
        )
        provider = cls(settings, Secret(MANAGEMENT_TOKEN))
        opened.append((server, provider))
        return emulator, server, provider

    yield build
    for server, provider in opened:
        provider.close()
        server.stop()


def selector(vendor: str, **key: Any) -> Any:
    return provider_class(vendor).selector_model.model_validate(key)


def test_h2o_without_username_is_refused() -> None:
    message = refused(
        """
        p: {provider: h2o, key: {user_id: u}, schedule: {every: 30d}, vault: {path: a}}
        """
    )
    assert "policies.p.key.username: this required key is missing" in message


def test_h2o_revoke_finishes_after_a_crash_between_deactivate_and_delete(
    client: Callable[[str], Client],
) -> None:
    emulator, _, provider = client("h2ogpte")
    slot = emulator.seed_slot()
    emulator.keys[slot.key_id].is_active = False  # type: ignore[attr-defined]

    provider.revoke_key(selector("h2ogpte", **slot.selector), slot.key_id)

    assert slot.key_id not in emulator.keys  # type: ignore[attr-defined]


def test_h2o_grace_expiry_is_sent_in_whole_minutes(client: Callable[[str], Client]) -> None:
    emulator, _, provider = client("h2ogpte")
    slot = emulator.seed_slot()

    provider.prepare_grace(
        selector("h2ogpte", **slot.selector), slot.key_id, datetime.now(UTC) + timedelta(seconds=90)
    )

    expiry = emulator.expiry_of(slot.key_id)  # type: ignore[attr-defined]
    assert expiry is not None
    assert timedelta(seconds=100) < expiry - datetime.now(UTC) <= timedelta(minutes=2)


def test_h2o_grace_expiry_refused_by_the_vendor_is_only_a_warning(
    client: Callable[[str], Client],
) -> None:
    emulator, server, provider = client("h2ogpte")
    slot = emulator.seed_slot()
    server.fail("PATCH", "/expire/", status=400)

    provider.prepare_grace(
        selector("h2ogpte", **slot.selector), slot.key_id, datetime.now(UTC) + timedelta(hours=1)
    )

    assert emulator.expiry_of(slot.key_id) is None  # type: ignore[attr-defined]


def test_h2o_new_key_keeps_the_old_keys_collection_and_inactivity_interval(
    client: Callable[[str], Client],
) -> None:
    emulator, _, provider = client("h2ogpte")
    slot = emulator.seed_slot()
    old = emulator.keys[slot.key_id]  # type: ignore[attr-defined]
    old.collection_id, old.inactivity_interval = "col-1", 30

    minted = provider.create_key(
        selector("h2ogpte", **slot.selector), "n", None, replacing=slot.key_id
    )

    new = emulator.keys[minted.key.key_id]  # type: ignore[attr-defined]
    assert (new.collection_id, new.inactivity_interval) == ("col-1", 30)


def test_h2o_without_user_id_is_refused() -> None:
    message = refused(
        """
        p: {provider: h2o, key: {username: ana}, schedule: {every: 30d}, vault: {path: a}}
        """
    )
    assert "policies.p.key.user_id: this required key is missing" in message


def test_h2o_regenerate_is_refused() -> None:
    message = refused(
        """
        p: {provider: h2o, key: {user_id: u}, strategy: regenerate, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    assert "h2ogpte does not support strategy 'regenerate'" in message


def test_h2o_expiry_must_be_an_interval() -> None:
    message = refused(
        """
        p: {provider: h2o, key: {user_id: u, expires_in: soon}, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    assert "policies.p.key.expires_in" in message


def test_agentex_with_both_agent_id_and_agent_name_is_refused() -> None:
    message = refused(
        """
        p: {provider: agentex, key: {agent_id: a, agent_name: b}, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    assert "policies.p.key: set exactly one of agent_id or agent_name" in message


def test_agentex_regenerate_is_refused_with_the_flow_to_use() -> None:
    message = refused(
        """
        p: {provider: agentex, key: {agent_name: b}, strategy: regenerate,
            schedule: {every: 30d}, vault: {path: a}}
        """
    )
    assert "scale_agentex does not support strategy 'regenerate'" in message
    assert "create_then_delete" in message


def test_agentex_without_base_url_is_refused() -> None:
    text = PROVIDERS.replace(', base_url: "https://agentex.example.com"', "") + "  {}\n"
    with pytest.raises(ConfigError, match=r"providers\.agentex\.base_url: this required key"):
        parse_config(
            text.replace("policies:\n  {}", "policies: {}"), "rotator.yaml", provider_class
        )


def test_agentex_grace_under_its_cache_time_warns() -> None:
    config = load(
        """
        p: {provider: agentex, key: {agent_name: b}, grace_period: 1m, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    assert any("may keep accepting a revoked key" in w for w in config.warnings)  # type: ignore[attr-defined]


def test_latitude_self_rotation_with_regenerate_is_refused() -> None:
    message = refused(
        """
        own: {provider: latitude, key: {api_key_id: tok_abc}, strategy: regenerate,
              schedule: {every: 30d}, vault: {path: rotator/latitude, field: token}}
        """
    )
    assert "rotates the token rotator itself uses" in message


def test_latitude_self_rotation_with_create_then_delete_is_accepted() -> None:
    config = load(
        """
        own: {provider: latitude, key: {api_key_id: tok_abc}, strategy: create_then_delete,
              schedule: {every: 30d}, vault: {path: rotator/latitude, field: token}}
        """
    )
    assert config.policies["own"].self_rotating  # type: ignore[attr-defined]


def test_latitude_key_ids_must_look_like_tokens() -> None:
    message = refused(
        """
        p: {provider: latitude, key: {api_key_id: "12345"}, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    assert "policies.p.key.api_key_id" in message


def test_h2o_sets_the_old_keys_expiry_to_the_end_of_grace(rig_factory: RigFactory) -> None:
    rig = rig_factory("h2ogpte")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "waiting"
    expiry = rig.emulator.expiry_of(spec.slot.key_id)  # type: ignore[attr-defined]
    assert expiry is not None
    assert abs(expiry - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    assert rig.vendor_accepts("app", spec.slot.secret)


def test_latitude_new_key_keeps_the_old_keys_restrictions(rig_factory: RigFactory) -> None:
    rig = rig_factory("latitudesh")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")

    rig.run("rotate", "now", "app")

    [new] = [k for k in rig.emulator.keys.values() if k.id != spec.slot.key_id]  # type: ignore[attr-defined]
    assert new.read_only is True
    assert new.allowed_ips == ["203.0.113.7"]


def test_latitude_create_then_delete_lists_the_account_once_before_it_creates(
    rig_factory: RigFactory,
) -> None:
    """The preflight's listing (is this rotator's own token?) also gives the old key's
    restrictions the new key copies: the create does not list the account again."""
    rig = rig_factory("latitudesh")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    start = len(rig.server.log)

    rig.run("rotate", "now", "app")

    calls = rig.server.log[start:]
    create = calls.index(("POST", "/auth/api_keys"))
    assert calls[:create] == [("GET", "/auth/api_keys")]


def test_latitude_rotating_rotators_own_key_without_vault_is_refused(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("latitudesh")
    rig.emulator.tokens.clear()
    own = rig.emulator.add_key("rotator", token=MANAGEMENT_TOKEN)  # type: ignore[attr-defined]
    spec = rig.add_policy("app", strategy="create_then_delete")
    rig.policies["app"].slot.selector["api_key_id"] = own.id
    rig.write_config()

    result = rig.run("rotate", "now", "app", "--json")

    assert result.returncode == 1
    assert "is the token rotator itself uses" in json.loads(result.stdout)["message"]
    assert rig.emulator.accepts(spec.slot.selector, MANAGEMENT_TOKEN)
    assert rig.server.calls("POST") == 0


def test_latitude_rotates_its_own_key_kept_in_vault(rig_factory: RigFactory) -> None:
    rig = rig_factory("latitudesh")
    rig.emulator.tokens.clear()
    own = rig.emulator.add_key("rotator", token=MANAGEMENT_TOKEN)  # type: ignore[attr-defined]
    spec = rig.add_policy("own", strategy="create_then_delete", grace="0s")
    rig.policies["own"].slot.selector["api_key_id"] = own.id
    rig.vault_api("POST", f"secret/data/{spec.vault_path}", {"data": {"api_key": MANAGEMENT_TOKEN}})
    config = rig.write_config().read_text()
    rig.config_path.write_text(
        config.replace('token: "${SANDBOX_TOKEN}"', f'token: "vault:{spec.vault_path}#api_key"')
    )

    first = rig.run("rotate", "now", "own", "--json")
    second = rig.run("rotate", "now", "own", "--json")

    assert json.loads(first.stdout)["result"] == "completed", first.stderr
    assert json.loads(second.stdout)["result"] == "completed", second.stderr
    assert not rig.emulator.accepts(spec.slot.selector, MANAGEMENT_TOKEN)
    assert rig.emulator.accepts(spec.slot.selector, rig.vault_secret("own"))
    assert own.id not in rig.live_keys("own")


@pytest.mark.parametrize("key_type", ["github", "slack"])
def test_agentex_keys_looked_up_by_name_are_refused(key_type: str) -> None:
    message = refused(
        f"""
        p: {{provider: agentex, key: {{agent_name: b, api_key_type: {key_type}}},
            schedule: {{every: 30d}}, vault: {{path: a}}}}
        """
    )
    assert (
        f"policies.p.key.api_key_type: {key_type} keys are found by the server by name" in message
    )
    assert "rotator rotates internal and external keys" in message


def test_agentex_key_names_may_be_as_long_as_the_servers_column() -> None:
    from rotator.providers.scale_agentex import MAX_NAME_LENGTH, ScaleAgentexProvider

    assert MAX_NAME_LENGTH == 256
    assert ScaleAgentexProvider.capabilities.max_name_length == 256


def test_regenerate_without_a_key_id_warns_to_adopt_one() -> None:
    config = load(
        """
        p: {provider: latitude, key: {}, strategy: regenerate, schedule: {every: 30d},
            vault: {path: a}}
        """
    )
    [warning] = [w for w in config.warnings if "names none" in w]  # type: ignore[attr-defined]
    assert "set key.api_key_id or run 'rotator adopt POLICY --key-id ID'" in warning


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_revoke_refused_for_a_key_already_gone_is_done(
    client: Callable[[str], Client], vendor: str
) -> None:
    emulator, server, provider = client(vendor)
    slot = emulator.seed_slot()
    emulator.remove_key(slot.selector, slot.key_id)
    method, path = type(emulator).operations["revoke"]
    server.fail(method, path, status=409)

    provider.revoke_key(selector(vendor, **slot.selector), slot.key_id)

    assert slot.key_id not in emulator.live_key_ids(slot.selector)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_revoke_refused_while_the_key_lives_raises(
    client: Callable[[str], Client], vendor: str
) -> None:
    emulator, server, provider = client(vendor)
    slot = emulator.seed_slot()
    server.fail("POST" if vendor == "h2ogpte" else "DELETE", ".", status=409)

    with pytest.raises(VendorError, match="409"):
        provider.revoke_key(selector(vendor, **slot.selector), slot.key_id)
    assert slot.key_id in emulator.live_key_ids(slot.selector)


def test_latitude_sends_json_as_the_sdks_do(client: Callable[[str], Client]) -> None:
    _, _, provider = client("latitudesh")

    minted = provider.create_key(selector("latitudesh"), "n", None, replacing=None)

    assert minted.key.key_id.startswith("tok_")


def test_latitude_key_restricted_by_ip_is_verified_by_listing(rig_factory: RigFactory) -> None:
    rig = rig_factory("latitudesh")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "waiting", result.stdout
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert spec.slot.key_id in rig.live_keys("app")


def test_latitude_plan_says_how_an_ip_restricted_key_is_verified(rig_factory: RigFactory) -> None:
    rig = rig_factory("latitudesh")
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("plan", "app")

    assert "with allowed_ips: listed, using the management token" in result.stdout, result.stdout


def test_latitude_verifying_a_new_key_lists_the_account_once(
    client: Callable[[str], Client],
) -> None:
    _, server, provider = client("latitudesh")
    chosen = selector("latitudesh")
    minted = provider.create_key(chosen, "n", None, replacing=None)
    before = server.calls("GET")

    assert provider.verify_key(chosen, minted) is True
    assert server.calls("GET") - before == 1, "the new token's own listing shows the key"


def test_latitude_new_token_that_does_not_list_its_key_is_a_failed_check(
    client: Callable[[str], Client],
) -> None:
    emulator, _, provider = client("latitudesh")
    chosen = selector("latitudesh")
    minted = provider.create_key(chosen, "n", None, replacing=None)
    other = provider.create_key(chosen, "other", None, replacing=None)
    emulator.remove_key(chosen.model_dump(), minted.key.key_id)

    assert provider.verify_key(chosen, MintedKey(minted.key, other.secret)) is False


def test_latitude_vendor_down_during_verify_is_a_retry_not_a_failed_check(
    client: Callable[..., Client],
) -> None:
    _, server, provider = client("latitudesh", retry_for="0s")
    chosen = selector("latitudesh")
    minted = provider.create_key(chosen, "n", None, replacing=None)
    server.fail("GET", "/auth/api_keys", status=503, times=100)

    with pytest.raises(VendorUnavailable):
        provider.verify_key(chosen, minted)


def test_a_failed_call_is_retried_for_no_longer_than_the_providers_retry_for(
    client: Callable[..., Client],
) -> None:
    _, server, provider = client("latitudesh", retry_for="0s")
    server.fail("GET", "/auth/api_keys", status=503, times=100)

    with pytest.raises(VendorUnavailable):
        provider.list_keys(selector("latitudesh"))

    assert server.calls("GET", "/auth/api_keys") == 1, "retry_for: 0s makes one try"


def test_latitude_new_token_refused_is_a_failed_check(client: Callable[[str], Client]) -> None:
    _, _, provider = client("latitudesh")
    chosen = selector("latitudesh")
    minted = provider.create_key(chosen, "n", None, replacing=None)

    refused_token = MintedKey(minted.key, Secret("not-the-token"))

    assert provider.verify_key(chosen, refused_token) is False


def test_validate_online_fails_a_regenerate_policy_with_no_adopted_key(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="regenerate")
    del spec.slot.selector["api_key_uuid"]
    rig.write_config()

    before = rig.run("validate", "--online")
    rig.run("adopt", "app", "--key-id", spec.slot.key_id)
    after = rig.run("validate", "--online")

    assert before.returncode == 2
    assert "rotator adopt app --key-id" in before.stdout
    assert after.returncode == 0, after.stdout
