"""`rotate due` with nothing due: the engine's answer, read without opening the engine.

A CronJob starts `rotate due` every few minutes and mostly finds nothing to do,
so that answer comes from a plain read of committed state. Whenever anything
might need doing, the decision goes to the engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.audit.store import AuditStore, RotationRecord
from rotator.config.loader import Config, parse_config
from rotator.engine.engine import Engine
from rotator.engine.idle import idle_outcomes
from rotator.providers.registry import provider_class
from rotator.secret import Secret
from tests.support.configs import config_text
from tests.support.servers import free_port

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def config_for(database_url: str) -> Config:
    return parse_config(config_with(database_url), "rotator.yaml", provider_class)


def config_with(database_url: str) -> str:
    return config_text() + f'database: {{url: "{database_url}"}}\n'


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[AuditStore]:
    opened = AuditStore.open(Secret(migrated_database_url))
    yield opened
    opened.close()


def adopt(store: AuditStore, policy: str, *, at: datetime, attention: str | None = None) -> None:
    store.set_policy_state(policy, current_key_id="key-1", adopted_at=at, attention=attention)


def start_rotation(store: AuditStore, policy: str, state: str) -> None:
    store.create_rotation(
        RotationRecord(
            id="r1",
            policy=policy,
            provider="digitalocean_gradient",
            strategy="create_then_delete",
            state=state,
            emergency=False,
            old_key_id="key-1",
            new_key_id="key-2",
            new_key_name=None,
            new_secret_fingerprint=None,
            vault_path="apps/web",
            vault_field="api_key",
            vault_base_version=1,
            vault_version=2,
            grace_until=NOW + timedelta(hours=1),
            needs_attention=False,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            created_at=NOW,
            updated_at=NOW,
            completed_at=None,
        ),
        details={},
    )


def test_nothing_due_gives_exactly_the_engines_answer(
    store: AuditStore, migrated_database_url: str
) -> None:
    adopt(store, "web", at=NOW - timedelta(days=1))
    config = config_for(migrated_database_url)
    engine = Engine.open(config)
    try:
        from_engine = engine.rotate_if_due("web")
    finally:
        engine.close()

    assert idle_outcomes(config, NOW) == [from_engine]


def test_a_policy_never_rotated_goes_to_the_engine(
    store: AuditStore, migrated_database_url: str
) -> None:
    assert idle_outcomes(config_for(migrated_database_url), NOW) is None


def test_a_due_policy_goes_to_the_engine(store: AuditStore, migrated_database_url: str) -> None:
    adopt(store, "web", at=NOW - timedelta(days=31))

    assert idle_outcomes(config_for(migrated_database_url), NOW) is None


def test_a_rotation_waiting_in_grace_goes_to_the_engine(
    store: AuditStore, migrated_database_url: str
) -> None:
    adopt(store, "web", at=NOW - timedelta(days=1))
    start_rotation(store, "web", "grace")

    assert idle_outcomes(config_for(migrated_database_url), NOW) is None


def test_a_finished_rotation_does_not_keep_the_policy_busy(
    store: AuditStore, migrated_database_url: str
) -> None:
    adopt(store, "web", at=NOW - timedelta(days=1))
    start_rotation(store, "web", "completed")

    outcomes = idle_outcomes(config_for(migrated_database_url), NOW)

    assert outcomes is not None
    assert [o.result.value for o in outcomes] == ["not_due"]


def test_a_policy_flagged_for_attention_goes_to_the_engine(
    store: AuditStore, migrated_database_url: str
) -> None:
    adopt(store, "web", at=NOW - timedelta(days=1), attention="key-1 is gone at the vendor")

    assert idle_outcomes(config_for(migrated_database_url), NOW) is None


def test_a_database_without_the_schema_goes_to_the_engine(database_url: str) -> None:
    assert idle_outcomes(config_for(database_url), NOW) is None


def test_an_unreachable_database_goes_to_the_engine() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rotator"

    assert idle_outcomes(config_for(url), NOW) is None


def test_rotate_due_with_nothing_due_imports_neither_the_engine_nor_logging_nor_tls(
    store: AuditStore, migrated_database_url: str, tmp_path: Path
) -> None:
    adopt(store, "web", at=NOW - timedelta(days=1))
    config = tmp_path / "rotator.yaml"
    config.write_text(config_with(migrated_database_url))
    script = textwrap.dedent(
        f"""
        import sys
        from rotator.cli import main
        try:
            main(["rotate", "due", "-c", {str(config)!r}])
        except SystemExit as exit:
            code = exit.code
        heavy = {{"sqlalchemy", "structlog", "hvac", "httpx", "rotator.tls"}}
        heavy = sorted(heavy & set(sys.modules))
        print("exit", code, "heavy", heavy)
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert "not_due" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("exit 0 heavy []")


def test_a_database_password_never_reaches_the_output_of_rotate_due(tmp_path: Path) -> None:
    password = "db-password-0123456789"
    url = f"postgresql+psycopg://rotator:${{DB_PASSWORD}}@127.0.0.1:{free_port()}/rotator"
    config = tmp_path / "rotator.yaml"
    config.write_text(config_with(url))

    result = subprocess.run(
        [sys.executable, "-m", "rotator", "rotate", "due", "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "DB_PASSWORD": password},
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "cannot use the audit database" in result.stderr
    assert password not in result.stdout + result.stderr
