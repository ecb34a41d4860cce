"""``rotator validate``: every problem of a file in one run, each in rotator's own voice."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rotator.config.loader import configuration_keys
from rotator.config.model import RawConfig
from rotator.providers.registry import VENDORS, provider_class
from tests.support.configs import BASE, config_text
from tests.test_cli_foundation import CREDENTIALS, ROOT, rotator

MANY_MISTAKES = """
vault:
  address: http://127.0.0.1:8200
  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}
daemon: {port: 70000}
providers:
  do: {type: digitalocean_gradient, token: "${TEST_DO_TOKEN}"}
  literal: {type: digitalocean_gradient, token: "dop_v1_literal_token_value"}
notifications:
  webhooks:
    ops: {url: "${TEST_DO_TOKEN}", policies: [nosuch]}
policies:
  typo:
    provider: do
    key: {agent_uuid: agent-1}
    strategy: create_than_delete
    schedule: {every: 30d}
    vault: {path: apps/typo}
  orphaned:
    provider: nowhere
    key: {agent_uuid: agent-2}
    schedule: {every: 30d}
    vault: {path: apps/orphaned}
  selector:
    provider: do
    key: {agent: agent-3}
    schedule: {every: 30d}
    vault: {path: apps/selector}
"""


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "rotator.yaml"
    path.write_text(text)
    result = rotator("validate", "-c", str(path), env=CREDENTIALS)
    return result.returncode, result.stderr + result.stdout


def test_validate_reports_every_independent_problem_in_one_run(tmp_path: Path) -> None:
    code, output = validate(tmp_path, MANY_MISTAKES)

    assert code == 2
    assert "7 problems found" in output
    assert "daemon.port:" in output
    assert "policies.typo.strategy:" in output
    assert "policies.orphaned.provider: names provider 'nowhere'" in output
    assert "policies.selector.key.agent: unknown key" in output
    assert "providers.literal.token: looks like a literal secret" in output
    assert "notifications.webhooks.ops.policies: names policy 'nosuch'" in output
    assert "dop_v1_literal_token_value" not in output


@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        (
            ("strategy: create_then_delete", "strategy: create_than_delete"),
            "policies.web.strategy: 'create_than_delete' is not a choice here; use one of: "
            "regenerate, create_then_delete",
        ),
        (("grace_period: 1h", "grace_period: soon"), "'soon' is not a duration"),
        (
            ("method: token", "method: tokn"),
            "vault.auth: method 'tokn' is not known; use one of: token, approle, kubernetes",
        ),
        (
            ("address: http://127.0.0.1:8200", "address: http://127.0.0.1:8200\n  timeout: 0"),
            "vault.timeout: 0 is too small: it must be more than 0",
        ),
        (
            ("vault: {path: apps/web, field: api_key}", "vault: {path: '', field: api_key}"),
            "policies.web.vault.path: must not be empty",
        ),
    ],
    ids=["choice", "duration", "union-tag", "greater-than", "empty"],
)
def test_schema_messages_are_in_rotators_voice(
    tmp_path: Path, mistake: tuple[str, str], said: str
) -> None:
    code, output = validate(tmp_path, config_text().replace(*mistake))

    assert code == 2
    assert said in output
    assert "Input should" not in output


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ("daemon: {port: 70000}", "daemon.port: 70000 is too large: at most 65535 is allowed"),
        ("daemon: {concurrency: many}", "daemon.concurrency: 'many' is not a whole number"),
        ("daemon: {concurrency: 2.5}", "daemon.concurrency: 2.5 is not a whole number"),
        ("daemon: [1, 2]", "daemon: must be a mapping of keys to values, not a list"),
        ("allow_literal_secrets: perhaps", "'perhaps' is not true or false"),
        (
            "notifications: {webhooks: {ops: {url: '${TEST_DO_TOKEN}', format: teams}}}",
            "notifications.webhooks.ops.format: 'teams' is not a choice here; use one of: "
            "json, slack",
        ),
    ],
    ids=["le", "int", "int-from-float", "mapping", "bool", "literal"],
)
def test_settings_messages_are_in_rotators_voice(tmp_path: Path, extra: str, said: str) -> None:
    code, output = validate(tmp_path, config_text() + extra + "\n")

    assert code == 2
    assert said in output
    assert "Input should" not in output


@pytest.mark.parametrize("text", ["", "# nothing yet\n", BASE])
def test_a_configuration_without_policies_exits_2_nothing_to_rotate(
    tmp_path: Path, text: str
) -> None:
    code, output = validate(tmp_path, text)

    assert code == 2
    assert "no policies: nothing to rotate" in output


def test_a_literal_password_in_the_database_url_is_refused(tmp_path: Path) -> None:
    url = "postgresql+psycopg://rotator:hunter2-db-pass@db:5432/rotator"

    code, output = validate(tmp_path, config_text() + f"database: {{url: '{url}'}}\n")

    assert code == 2
    assert "database.url: holds a literal password" in output
    assert "hunter2-db-pass" not in output


def test_a_database_password_from_the_environment_or_allowed_literals_is_accepted(
    tmp_path: Path,
) -> None:
    referenced = "postgresql+psycopg://rotator:${TEST_DO_TOKEN}@db:5432/rotator"
    literal = "postgresql+psycopg://rotator:hunter2-db-pass@db:5432/rotator"

    from_env = validate(tmp_path, config_text() + f"database: {{url: '{referenced}'}}\n")
    allowed = validate(
        tmp_path,
        config_text() + f"database: {{url: '{literal}'}}\nallow_literal_secrets: true\n",
    )

    assert from_env[0] == 0, from_env[1]
    assert allowed[0] == 0, allowed[1]


def test_a_database_url_can_come_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "db-url"
    secret_file.write_text("sqlite:///" + str(tmp_path / "from-file.db") + "\n")

    code, output = validate(tmp_path, config_text() + f"database: {{url: 'file:{secret_file}'}}\n")

    assert code == 0, output


def _model_fields() -> set[tuple[str, str]]:
    """(model, key) for every key a configuration file may hold, vendors' included."""
    vendors = [provider_class(vendor) for vendor in VENDORS]
    return configuration_keys(
        RawConfig,
        *(cls.settings_model for cls in vendors),
        *(cls.selector_model for cls in vendors),
    )


def test_config_example_shows_every_option_of_the_configuration_model() -> None:
    example = (ROOT / "config.example.yaml").read_text()

    missing = sorted(
        f"{model}.{name}"
        for model, name in _model_fields()
        if not re.search(rf"^\s*(#\s*)?(- )?{name}:", example, re.MULTILINE)
        and not re.search(rf"[{{,]\s*{name}:", example)
    )

    assert missing == [], f"config.example.yaml lacks: {', '.join(missing)}"
