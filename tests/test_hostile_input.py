"""Hostile or broken input files: refused quickly and clearly, touching nothing.

YAML alias bombs, credential files that are devices or world-readable, policy
names and Vault paths that climb out of their place, numbers that mean
nothing, a database created readable by others, a downgrade that drops the
audit trail.
"""

from __future__ import annotations

import os
import re
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from rotator.audit import migrations
from rotator.audit.store import AuditStore
from rotator.cli import main
from rotator.config.credentials import MAX_CREDENTIAL_FILE_BYTES
from rotator.config.loader import parse_config
from rotator.config.model import AppRoleAuth, TokenAuth, VaultConfig
from rotator.config.yaml_source import load_yaml
from rotator.engine.lock import PolicyLocks
from rotator.errors import ConfigError, VaultAuthError
from rotator.providers.registry import provider_class
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.support.configs import VALID_POLICY, config_text
from tests.support.servers import OpenBaoServer

BILLION_LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10)
)
RECURSIVE = "a: &x [*x]\n"


@pytest.fixture(autouse=True)
def _logging_set_up_by_a_test_ends_with_it() -> Iterator[None]:
    """``main`` points logging at this test's captured stderr, which closes after it."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "rotator.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-c", str(config)])
    return int(exited.value.code or 0), capsys.readouterr().err


BOMBS = pytest.mark.parametrize(
    "text", [BILLION_LAUGHS, RECURSIVE], ids=["billion-laughs", "recursive"]
)


@BOMBS
def test_a_yaml_alias_bomb_exits_2_naming_the_alias(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = validate(tmp_path, text, capsys)

    assert code == 2
    assert "alias" in error


@BOMBS
def test_a_yaml_alias_bomb_is_refused_using_little_memory(text: str) -> None:
    tracemalloc.start()

    with pytest.raises(ConfigError):
        load_yaml(text, "rotator.yaml")

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_a_recursive_alias_names_its_line() -> None:
    with pytest.raises(ConfigError, match=r"rotator\.yaml:1: .*refers to itself"):
        load_yaml(RECURSIVE, "rotator.yaml")


def test_aliases_within_reason_still_work() -> None:
    text = "defaults: &d {every: 30d, window: 1h}\n" + "".join(
        f"p{n}: {{<<: *d, name: p{n}}}\n" for n in range(2000)
    )

    data = load_yaml(text, "rotator.yaml").data

    assert data["p1999"]["every"] == "30d"


def test_a_valid_file_still_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text())

    main(["validate", "-c", str(config)])

    assert "OK" in capsys.readouterr().out


def with_token_file(path: Path | str) -> str:
    return config_text().replace('token: "${TEST_DO_TOKEN}"', f'token: "file:{path}"')


def token_file(folder: Path, mode: int, name: str = "token") -> Path:
    path = folder / name
    path.write_text("do-token-from-a-file\n")
    path.chmod(mode)
    return path


def test_a_credential_file_that_is_a_device_is_refused_at_once() -> None:

    with pytest.raises(ConfigError, match="/dev/zero is not a regular file") as caught:
        parse_config(with_token_file("/dev/zero"), "rotator.yaml", provider_class)

    assert caught.value.exit_code == 2


def test_an_oversized_credential_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * (MAX_CREDENTIAL_FILE_BYTES + 1))
    path.chmod(0o600)

    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        parse_config(with_token_file(path), "rotator.yaml", provider_class)


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        (0o640, "readable by its group"),
        (0o604, "readable by anyone"),
        (0o602, "writable by anyone"),
    ],
)
def test_a_credential_file_others_may_read_or_write_is_warned_about(
    mode: int, problem: str, tmp_path: Path
) -> None:
    config = parse_config(
        with_token_file(token_file(tmp_path, mode)), "rotator.yaml", provider_class
    )

    [warning] = [w for w in config.warnings if "providers.do.token" in w]
    assert problem in warning
    assert "chmod 600" in warning


def test_a_private_credential_file_is_not_warned_about(tmp_path: Path) -> None:
    config = parse_config(
        with_token_file(token_file(tmp_path, 0o600)), "rotator.yaml", provider_class
    )

    assert not [w for w in config.warnings if "providers.do.token" in w]


def test_a_symlink_into_a_world_writable_directory_is_warned_about(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    link = tmp_path / "token"
    link.symlink_to(token_file(shared, 0o600))

    config = parse_config(with_token_file(link), "rotator.yaml", provider_class)

    [warning] = [w for w in config.warnings if "providers.do.token" in w]
    assert "world-writable directory" in warning


def policy(name: str = "web", path: str = "apps/web") -> str:
    return VALID_POLICY.replace("web:", f'"{name}":', 1).replace(
        "path: apps/web", f'path: "{path}"'
    )


@pytest.mark.parametrize("name", ["../web", "team/web", "web/..", ".hidden", "a b"])
def test_a_policy_name_that_is_not_a_plain_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="policy names") as caught:
        parse_config(config_text(policy(name=name)), "rotator.yaml", provider_class)

    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "path", ["../other-team/web", "apps/../../x", "/apps/web", "apps//web", "apps/./web", "a?b#c"]
)
def test_a_vault_path_that_climbs_or_has_empty_segments_is_refused(path: str) -> None:
    with pytest.raises(ConfigError, match=r"policies\.web\.vault\.path") as caught:
        parse_config(config_text(policy(path=path)), "rotator.yaml", provider_class)

    assert caught.value.exit_code == 2


@pytest.mark.parametrize("mount", ["../other-kv", "team/../kv", "/kv", "kv//x", "kv?x"])
def test_a_policy_vault_mount_that_climbs_or_has_empty_segments_is_refused(mount: str) -> None:
    text = config_text(policy().replace("field: api_key}", f'field: api_key, mount: "{mount}"}}'))

    with pytest.raises(ConfigError, match=r"policies\.web\.vault\.mount") as caught:
        parse_config(text, "rotator.yaml", provider_class)

    assert caught.value.exit_code == 2


def test_a_vault_credential_reference_that_climbs_is_refused() -> None:
    text = config_text().replace('"${TEST_DO_TOKEN}"', '"vault:../admin/root#token"')

    with pytest.raises(ConfigError, match=r"providers\.do\.token"):
        parse_config(text, "rotator.yaml", provider_class)


def test_a_staging_prefix_that_climbs_is_refused() -> None:
    text = config_text().replace("  address:", '  staging_prefix: "../elsewhere"\n  address:')

    with pytest.raises(ConfigError, match=r"vault\.staging_prefix"):
        parse_config(text, "rotator.yaml", provider_class)


def test_a_policy_writing_inside_the_staging_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="staging"):
        parse_config(
            config_text(policy(path="rotator/staging/other")), "rotator.yaml", provider_class
        )


def test_a_fractional_vault_timeout_is_kept_not_truncated_to_zero(openbao: OpenBaoServer) -> None:
    config = VaultConfig(address=openbao.address, auth=TokenAuth(), timeout=0.5)
    store = VaultStore(config, Secret(openbao.root_token))

    store.login()

    assert store.is_reachable()


@pytest.mark.parametrize("key", ["tick", "misfire_grace"])
def test_a_daemon_duration_of_zero_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"daemon\.{key}"):
        parse_config(config_text() + f"daemon: {{{key}: 0s}}\n", "rotator.yaml", provider_class)


ZERO_TIMEOUTS = {
    "vault.timeout": ("  address:", "  timeout: 0\n  address:"),
    "providers.do.timeout": (
        'token: "${TEST_DO_TOKEN}"}',
        'token: "${TEST_DO_TOKEN}", timeout: 0}',
    ),
}


@pytest.mark.parametrize("key", sorted(ZERO_TIMEOUTS))
def test_a_timeout_of_zero_is_refused(key: str) -> None:
    text = config_text().replace(*ZERO_TIMEOUTS[key], 1)

    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_config(text, "rotator.yaml", provider_class)


def sqlite_config(tmp_path: Path) -> Path:
    config = tmp_path / "rotator.yaml"
    url = f"sqlite:///{tmp_path / 'rotator.db'}"
    config.write_text(config_text() + f'database: {{url: "{url}"}}\n')
    return config


def test_the_sqlite_database_and_its_lock_files_are_created_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        main(["db", "upgrade", "-c", str(sqlite_config(tmp_path))])
        store = AuditStore.open(Secret(f"sqlite:///{tmp_path / 'rotator.db'}"))
        with PolicyLocks(store.engine).hold("web") as held:
            assert held
        store.close()
    finally:
        os.umask(old_umask)

    created = [tmp_path / "rotator.db", *(tmp_path / "rotator.db.locks").iterdir()]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in created}
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE((tmp_path / "rotator.db.locks").stat().st_mode) == 0o700


def test_a_downgrade_that_drops_audit_data_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(sqlite_config(tmp_path))
    main(["db", "upgrade", "-c", config])

    with pytest.raises(SystemExit) as exited:
        main(["db", "downgrade", "base", "-c", config])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "audit event" in error
    assert "--force" in error
    store = AuditStore.open(Secret(f"sqlite:///{tmp_path / 'rotator.db'}"))
    assert migrations.current_revision(store.engine) == migrations.head_revision()
    store.close()


def test_a_forced_downgrade_to_base_empties_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(sqlite_config(tmp_path))
    main(["db", "upgrade", "-c", config])

    main(["db", "downgrade", "base", "--force", "-c", config])

    assert "schema at revision base" in capsys.readouterr().out


def test_a_vault_secret_id_file_that_is_a_device_is_refused_at_once() -> None:
    auth = AppRoleAuth(method="approle", role_id="r", secret_id_file=Path("/dev/zero"))
    store = VaultStore(VaultConfig(address="http://127.0.0.1:9", auth=auth))

    with pytest.raises(VaultAuthError, match="/dev/zero is not a regular file"):
        store.login()
