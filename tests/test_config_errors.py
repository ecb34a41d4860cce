"""Bad configuration is refused with the file, the line, the key and what to do."""

from __future__ import annotations

import pytest

from rotator.config.loader import parse_config
from rotator.errors import ConfigError
from rotator.providers.registry import provider_class
from tests.support.configs import BASE, VALID_POLICY, config_text


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value-123")


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "rotator.yaml", provider_class)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_a_valid_file_loads_with_typed_policies() -> None:
    config = parse_config(config_text(), "rotator.yaml", provider_class)
    policy = config.policies["web"]
    assert policy.provider_type == "digitalocean_gradient"
    assert policy.grace_period.total_seconds() == 3600
    assert policy.vault.path == "apps/web"


def test_malformed_yaml_names_the_line() -> None:
    message = problems("vault:\n  address: [unclosed\npolicies: {}\n")
    assert "rotator.yaml:3" in message or "rotator.yaml:2" in message
    assert "not valid YAML" in message


def test_unknown_top_level_key_is_refused_with_a_suggestion() -> None:
    message = problems(config_text() + "polices: {}\n")
    assert "polices" in message
    assert "did you mean 'policies'" in message


def test_typo_inside_a_policy_names_its_line_and_path() -> None:
    text = config_text().replace("schedule:", "shedule:")
    message = problems(text)
    assert "policies.web.shedule: unknown key 'shedule'" in message
    assert "did you mean 'schedule'" in message
    line = text.splitlines().index("    shedule: {every: 30d}") + 1
    assert f"rotator.yaml:{line}:" in message


def test_unknown_provider_type_lists_the_known_ones() -> None:
    message = problems(config_text().replace("digitalocean_gradient", "digitalocean"))
    assert "providers.do.type: unknown provider type 'digitalocean'" in message
    assert "digitalocean_gradient" in message


def test_policy_pointing_to_a_missing_provider_is_refused() -> None:
    message = problems(config_text().replace("provider: do", "provider: nope"))
    assert "policies.web.provider: names provider 'nope'" in message


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("{cron: '61 * * * *'}", "not a valid 5-field cron expression"),
        ("{every: soon}", "is not a duration"),
        ("{every: 30d, cron: '0 3 * * *'}", "set exactly one of 'cron'"),
        ("{every: 30d, jitter: 5 minutes}", "is not a duration"),
    ],
)
def test_bad_schedule_is_refused(schedule: str, expected: str) -> None:
    message = problems(config_text().replace("{every: 30d}", schedule))
    assert "policies.web.schedule" in message
    assert expected in message


def test_bad_grace_period_is_refused() -> None:
    message = problems(config_text().replace("grace_period: 1h", "grace_period: 1 day"))
    assert "policies.web.grace_period" in message


def test_unset_environment_variable_is_named() -> None:
    message = problems(config_text().replace("TEST_DO_TOKEN", "ROTATOR_TEST_UNSET_VAR"))
    assert "providers.do.token" in message
    assert "ROTATOR_TEST_UNSET_VAR is not set" in message


def test_duplicate_policy_names_are_refused_with_both_lines() -> None:
    policy = config_text().split("policies:\n")[1]
    text = config_text() + policy.replace("apps/web", "apps/other")
    message = problems(text)
    assert "duplicate key 'web' at policies.web" in message
    assert "first defined at line" in message


def test_two_policies_writing_the_same_vault_field_are_refused() -> None:
    policy = config_text().split("policies:\n")[1]
    text = config_text() + policy.replace("  web:", "  api:")
    message = problems(text)
    assert "writes the same Vault secret apps/web#api_key (mount secret) as policy" in message


def test_literal_secret_is_refused_without_opt_in() -> None:
    message = problems(config_text().replace('"${TEST_DO_TOKEN}"', "dop_v1_literal_abcdef"))
    assert "providers.do.token: looks like a literal secret" in message
    assert "dop_v1_literal_abcdef" not in message


def test_literal_secret_is_accepted_with_opt_in_and_a_warning() -> None:
    text = "allow_literal_secrets: true\n" + config_text().replace(
        '"${TEST_DO_TOKEN}"', "dop_v1_literal_abcdef"
    )
    config = parse_config(text, "rotator.yaml", provider_class)
    assert any("literal secret" in w for w in config.warnings)
    assert "dop_v1_literal_abcdef" not in repr(config)


def test_missing_selector_key_is_refused() -> None:
    message = problems(config_text().replace("agent_uuid: agent-1, ", ""))
    assert "policies.web.key.agent_uuid: this required key is missing" in message


def test_unknown_selector_key_is_refused() -> None:
    message = problems(config_text().replace("agent_uuid: agent-1", "agent_id: agent-1"))
    assert "policies.web.key.agent_id: unknown key" in message


def test_unknown_vault_auth_method_is_refused() -> None:
    text = config_text().replace("method: token", "method: ldap")
    assert "vault.auth" in problems(text)


def test_approle_auth_requires_its_keys() -> None:
    text = config_text().replace(
        '{method: token, token: "${TEST_VAULT_TOKEN}"}', "{method: approle, role_id: r}"
    )
    message = problems(text)
    assert "vault.auth.secret_id_file: this required key is missing" in message


def test_credential_file_reference_must_exist(tmp_path: object) -> None:
    message = problems(config_text().replace('"${TEST_DO_TOKEN}"', '"file:/nonexistent/token"'))
    assert "credential file /nonexistent/token does not exist" in message


def test_every_problem_is_reported_at_once() -> None:
    text = config_text().replace("{every: 30d}", "{every: soon}") + "extra_key: 1\n"
    message = problems(text)
    assert "2 problems found" in message


def test_vault_reference_is_kept_for_resolution_at_start() -> None:
    config = parse_config(
        config_text().replace('"${TEST_DO_TOKEN}"', '"vault:rotator/creds#do"'),
        "rotator.yaml",
        provider_class,
    )
    assert str(config.providers["do"].token) == "vault:rotator/creds#do"


def test_empty_file_is_refused_for_a_missing_vault_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    message = problems(BASE.replace("address: http://127.0.0.1:8200", "mount: secret"))
    assert "vault.address is not set" in message


def test_a_webhook_naming_a_missing_policy_is_refused() -> None:
    text = config_text() + (
        "notifications:\n  webhooks:\n    ops: {url: 'https://hooks.example/x', policies: [nope]}\n"
    )
    message = problems(text)
    assert "notifications.webhooks.ops.policies: names policy 'nope'" in message


def test_a_webhook_with_an_unknown_event_is_refused() -> None:
    hook = "ops: {url: 'https://hooks.example/x', events: [sometimes]}"
    text = config_text() + f"notifications:\n  webhooks:\n    {hook}\n"
    assert "notifications.webhooks.ops.events" in problems(text)


def test_daemon_settings_are_checked() -> None:
    message = problems(config_text() + "daemon: {concurrency: 0, tick: often}\n")
    assert "daemon.concurrency" in message
    assert "daemon.tick" in message


def test_jitter_longer_than_the_window_is_refused() -> None:
    text = config_text().replace("{every: 30d}", "{cron: '0 3 * * *', window: 1h, jitter: 2h}")
    assert "'jitter' must be shorter than 'window'" in problems(text)


def with_retry_for(value: str) -> str:
    return config_text(
        base=BASE.replace('"${TEST_DO_TOKEN}"}', f'"${{TEST_DO_TOKEN}}", retry_for: {value}}}')
    )


def test_a_providers_retry_for_that_is_not_a_duration_is_refused_naming_the_key() -> None:
    message = problems(with_retry_for("soon"))

    assert "providers.do.retry_for" in message
    assert "is not a duration" in message


def test_a_providers_retry_for_beyond_ten_minutes_says_why() -> None:
    message = problems(with_retry_for("2h"))

    assert "providers.do.retry_for" in message
    assert "at most 10m" in message
    assert "lock is held" in message


def with_hooks(hooks: str) -> str:
    return config_text(VALID_POLICY.rstrip("\n") + f"\n    hooks: {hooks}\n")


def test_a_policys_hooks_make_three_tries_at_once_by_default() -> None:
    config = parse_config(with_hooks("{after_store: []}"), "rotator.yaml", provider_class)

    assert config.policies["web"].hook_tries == 3


@pytest.mark.parametrize("tries", ["0", "11", "often"])
def test_hooks_tries_outside_one_to_ten_is_refused_naming_the_key(tries: str) -> None:
    message = problems(with_hooks(f"{{tries: {tries}}}"))

    assert "policies.web.hooks.tries" in message
