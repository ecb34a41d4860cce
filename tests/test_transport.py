"""Transport: no token or secret to another host, no silent downgrade, Vault's own settings.

Vault here is a recording server that answers like Vault where the test needs
it and redirects where the attack needs it; the redirect's target is a
second loopback host that must never hear from rotator.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.config.loader import Webhook, parse_config
from rotator.config.model import VaultConfig
from rotator.errors import ConfigError, VaultError, VaultUnreachable, VendorUnavailable
from rotator.notify import Notifier
from rotator.providers.registry import provider_class
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import EmulatorServer
from rotator.secret import Secret
from rotator.vault import VaultStore
from rotator.vault_transport import MAX_ANSWER_BYTES
from rotator.vocabulary import Outcome, Result
from tests.support.configs import config_text
from tests.support.recorder import Recorded, Recorder
from tests.support.rig import MANAGEMENT_TOKEN

TOKEN = "hvs.vault-token-never-elsewhere"
NEW_SECRET = "new-secret-never-elsewhere-0123"
LOOKUP_SELF = json.dumps({"data": {"ttl": 0, "creation_ttl": 0}}).encode()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")
    for name in ("VAULT_CACERT", "VAULT_CAPATH", "VAULT_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    """Another loopback host: nothing rotator sends to Vault may arrive here."""
    server = Recorder(host="127.0.0.2")
    yield server
    server.stop()


def redirecting_vault(target: Recorder, *, login_works: bool) -> Recorder:
    def answer(request: Recorded) -> tuple[int, dict[str, str], bytes]:
        if login_works and request.path.endswith("/auth/token/lookup-self"):
            return 200, {"content-type": "application/json"}, LOOKUP_SELF
        return 307, {"location": target.url + request.path}, b""

    return Recorder(answer=answer)


def store_for(address: str, **settings: object) -> VaultStore:
    config = VaultConfig.model_validate({"address": address, **settings})
    return VaultStore(config, Secret(TOKEN))


def test_the_vault_token_never_follows_a_redirect_to_another_host(elsewhere: Recorder) -> None:
    vault = redirecting_vault(elsewhere, login_works=False)
    store = store_for(vault.url)

    with pytest.raises(VaultError, match="redirect"):
        store.login()

    vault.stop()
    assert vault.requests  # rotator did talk to its Vault
    assert elsewhere.requests == []


def test_a_secret_write_never_follows_a_redirect_to_another_host(elsewhere: Recorder) -> None:
    vault = redirecting_vault(elsewhere, login_works=True)
    store = store_for(vault.url)
    store.login()

    with pytest.raises(VaultError, match="redirect"):
        store.write_field("apps/web", "api_key", Secret(NEW_SECRET), cas=0)

    vault.stop()
    assert elsewhere.requests == []


def test_vault_namespace_from_the_environment_is_sent_like_the_vault_cli_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    vault = Recorder(answer=lambda _: (200, {"content-type": "application/json"}, LOOKUP_SELF))
    config = parse_config(config_text(), "rotator.yaml", provider_class)

    VaultStore(config.vault.model_copy(update={"address": vault.url}), Secret(TOKEN)).login()

    vault.stop()
    assert config.vault.namespace == "team-a"
    assert vault.requests[0].headers.get("x-vault-namespace") == "team-a"


def test_a_configured_namespace_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    text = config_text().replace("  address:", "  namespace: team-b\n  address:")

    assert parse_config(text, "rotator.yaml", provider_class).vault.namespace == "team-b"


@pytest.mark.parametrize("variable", ["VAULT_CACERT", "VAULT_CAPATH"])
def test_vault_ca_from_the_environment_is_used_like_the_vault_cli_does(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(variable, str(tmp_path))

    assert parse_config(config_text(), "rotator.yaml", provider_class).vault.verify_tls == str(
        tmp_path
    )


def test_vault_cacert_wins_over_vault_capath(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VAULT_CACERT", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("VAULT_CAPATH", str(tmp_path))

    assert parse_config(config_text(), "rotator.yaml", provider_class).vault.verify_tls == str(
        tmp_path / "ca.pem"
    )


INSECURE = {
    "vault.address": (
        "vault:\n  address: http://vault.example.com:8200\n"
        '  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}\n'
        'providers:\n  do: {type: digitalocean_gradient, token: "${TEST_DO_TOKEN}"}\n'
    ),
    "vault.verify_tls": (
        "vault:\n  address: https://vault.example.com:8200\n  verify_tls: false\n"
        '  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}\n'
        'providers:\n  do: {type: digitalocean_gradient, token: "${TEST_DO_TOKEN}"}\n'
    ),
    "providers.do.base_url": (
        "vault:\n  address: https://vault.example.com:8200\n"
        '  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}\n'
        "providers:\n  do: {type: digitalocean_gradient, base_url: http://api.example.com,"
        ' token: "${TEST_DO_TOKEN}"}\n'
    ),
    "notifications.webhooks.ops.url": (
        "vault:\n  address: https://vault.example.com:8200\n"
        '  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}\n'
        'providers:\n  do: {type: digitalocean_gradient, token: "${TEST_DO_TOKEN}"}\n'
        'notifications:\n  webhooks:\n    ops: {url: "${HOOK_URL}"}\n'
    ),
}


@pytest.mark.parametrize("key", sorted(INSECURE))
def test_validate_warns_naming_the_key_of_an_insecure_transport(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "http://hooks.example.com/T0/B0/hook-secret-path")

    config = parse_config(config_text(base=INSECURE[key]), "rotator.yaml", provider_class)

    [warning] = [w for w in config.warnings if key in w]
    assert "hook-secret-path" not in warning


def test_plain_http_to_loopback_is_not_warned_about() -> None:
    config = parse_config(config_text(), "rotator.yaml", provider_class)

    assert not [w for w in config.warnings if "http://" in w or "TLS" in w]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, standing in for a private CA's."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def tls_vendor(certificate: tuple[Path, Path]) -> Iterator[EmulatorServer]:
    emulator = emulator_class("digitalocean_gradient")({MANAGEMENT_TOKEN})
    server = EmulatorServer(emulator, tls=server_context(certificate))
    yield server.start()
    server.stop()


def provider_for(server: EmulatorServer, **settings: object) -> Any:
    cls = provider_class("digitalocean_gradient")
    config = {
        "type": "digitalocean_gradient",
        "token": Secret(MANAGEMENT_TOKEN),
        "base_url": server.vendor_url,
        **settings,
    }
    return cls(cls.settings_model.model_validate(config), Secret(MANAGEMENT_TOKEN))


def list_keys(server: EmulatorServer, **settings: object) -> object:
    slot = server.emulator.seed_slot()
    provider = provider_for(server, **settings)
    try:
        return provider.list_keys(provider.selector_model.model_validate(slot.selector))
    finally:
        provider.close()


def test_a_provider_trusts_a_private_ca_given_as_its_ca_bundle(
    tls_vendor: EmulatorServer, certificate: tuple[Path, Path]
) -> None:
    assert tls_vendor.vendor_url.startswith("https://")

    assert list_keys(tls_vendor, ca_bundle=str(certificate[0]))


def test_a_provider_without_the_private_ca_refuses_the_vendor(tls_vendor: EmulatorServer) -> None:
    with pytest.raises(VendorUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        list_keys(tls_vendor, retry_for="0s")


def trust_store(provider: Any) -> ssl.SSLContext:
    """The SSL context this thread's transport checks certificates with."""
    transport = provider._http._sender().__self__
    context: ssl.SSLContext = transport._ssl_context
    return context


def test_providers_without_a_ca_bundle_share_one_loaded_trust_store(
    tls_vendor: EmulatorServer, certificate: tuple[Path, Path]
) -> None:
    """Loading the CA store costs tens of milliseconds of CPU: once per process, not per client."""
    first, second = provider_for(tls_vendor), provider_for(tls_vendor)
    private = provider_for(tls_vendor, ca_bundle=str(certificate[0]))
    try:
        assert trust_store(first) is trust_store(second)
        assert trust_store(private) is not trust_store(first)
    finally:
        for provider in (first, second, private):
            provider.close()


def test_a_plain_http_vendor_loads_no_trust_store() -> None:
    """Loading the CA store costs tens of milliseconds of CPU, and no http:// call uses it."""
    emulator = emulator_class("digitalocean_gradient")({MANAGEMENT_TOKEN})
    with EmulatorServer(emulator) as server:
        provider = provider_for(server)
        try:
            assert server.vendor_url.startswith("http://")
            assert trust_store(provider).cert_store_stats()["x509_ca"] == 0
            assert list_keys(server)
        finally:
            provider.close()


def notify_over_tls(certificate: tuple[Path, Path], ca_bundle: Path | None) -> Recorder:
    hook = Recorder(tls=server_context(certificate))
    webhook = Webhook(
        name="ops",
        url=Secret(hook.url + "/hook"),
        format="json",
        events=frozenset({"failed"}),
        policies=None,
        timeout=5.0,
        ca_bundle=ca_bundle,
    )
    Notifier([webhook], resolve=lambda url: url).notify(Outcome("app", Result.FAILED, "boom"))
    hook.stop()
    return hook


def test_a_webhook_trusts_a_private_ca_given_as_its_ca_bundle(
    certificate: tuple[Path, Path],
) -> None:
    assert len(notify_over_tls(certificate, certificate[0]).requests) == 1


def test_a_webhook_without_the_private_ca_is_not_sent_to(certificate: tuple[Path, Path]) -> None:
    assert notify_over_tls(certificate, None).requests == []


@pytest.fixture
def tls_vault(certificate: tuple[Path, Path]) -> Iterator[Recorder]:
    """A Vault over HTTPS with a private CA's certificate for 127.0.0.1."""
    vault = Recorder(
        answer=lambda _: (200, {"content-type": "application/json"}, LOOKUP_SELF),
        tls=server_context(certificate),
    )
    yield vault
    vault.stop()


def test_vault_over_tls_trusts_a_private_ca_given_as_verify_tls(
    tls_vault: Recorder, certificate: tuple[Path, Path]
) -> None:
    store_for(tls_vault.url, verify_tls=str(certificate[0])).login()

    assert [r.path for r in tls_vault.requests] == ["/v1/auth/token/lookup-self"]


def test_vault_over_tls_trusts_a_directory_of_ca_certificates_given_as_verify_tls(
    tls_vault: Recorder, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """A c_rehash'ed directory, as $VAULT_CAPATH names one."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(certificate[0])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (tmp_path / f"{subject_hash}.0").write_bytes(certificate[0].read_bytes())

    store_for(tls_vault.url, verify_tls=str(tmp_path)).login()

    assert len(tls_vault.requests) == 1


def test_vault_over_tls_without_the_private_ca_is_refused_before_the_token_is_sent(
    tls_vault: Recorder,
) -> None:
    with pytest.raises(VaultUnreachable, match=r"cannot reach Vault at https://.*\(SSLError\)"):
        store_for(tls_vault.url).login()

    assert tls_vault.requests == []


def test_a_vault_certificate_for_another_host_is_refused(
    tls_vault: Recorder, certificate: tuple[Path, Path]
) -> None:
    """The certificate names 127.0.0.1 only: reached as localhost, it does not prove Vault."""
    elsewhere_name = tls_vault.url.replace("127.0.0.1", "localhost")

    with pytest.raises(VaultUnreachable, match="SSLError"):
        store_for(elsewhere_name, verify_tls=str(certificate[0])).login()

    assert tls_vault.requests == []


def test_a_vault_certificate_refused_says_to_check_the_tls_settings_not_that_vault_is_down(
    tls_vault: Recorder, certificate: tuple[Path, Path]
) -> None:
    elsewhere_name = tls_vault.url.replace("127.0.0.1", "localhost")

    with pytest.raises(VaultUnreachable) as refused:
        store_for(elsewhere_name, verify_tls=str(certificate[0])).login()

    assert "vault.verify_tls" in str(refused.value)
    assert "running" not in str(refused.value)


# urllib3 warns about every unverified request; rotator's own warning is validate's.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_vault_verify_tls_false_accepts_a_certificate_no_ca_vouches_for(
    tls_vault: Recorder,
) -> None:
    store_for(tls_vault.url, verify_tls=False).login()

    assert len(tls_vault.requests) == 1


def test_a_vault_ca_bundle_that_does_not_exist_is_a_config_error_naming_the_key(
    tls_vault: Recorder, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"

    with pytest.raises(ConfigError, match=rf"vault\.verify_tls.*{re.escape(str(missing))}"):
        store_for(tls_vault.url, verify_tls=str(missing)).login()

    assert tls_vault.requests == []


def test_an_empty_vault_verify_tls_does_not_turn_verification_off(tls_vault: Recorder) -> None:
    """Only ``false`` turns it off: an empty CA path is a mistake, not a choice."""
    with pytest.raises(ConfigError, match=r"vault\.verify_tls"):
        store_for(tls_vault.url, verify_tls="").login()

    assert tls_vault.requests == []


def test_a_vault_that_does_not_answer_within_the_timeout_is_unreachable() -> None:
    answered = threading.Event()

    def stall(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        answered.wait(10)
        return 200, {"content-type": "application/json"}, LOOKUP_SELF

    vault = Recorder(answer=stall)
    started = time.monotonic()
    try:
        with pytest.raises(VaultUnreachable, match="ReadTimeout"):
            store_for(vault.url, timeout=0.5).login()
    finally:
        answered.set()
        vault.stop()
    assert time.monotonic() - started < 5


def test_the_daemon_logs_transport_warnings_at_start(tmp_path: Path) -> None:
    config = tmp_path / "rotator.yaml"
    database = f'database: {{url: "sqlite:///{tmp_path}/never-migrated.db"}}\n'
    config.write_text(config_text(base=INSECURE["vault.address"]) + database)
    env = {"PATH": "/usr/bin:/bin", "TEST_VAULT_TOKEN": "t", "TEST_DO_TOKEN": "t"}

    result = subprocess.run(
        [sys.executable, "-m", "rotator", "daemon", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )

    assert "configuration warning" in result.stderr
    assert "vault.address" in result.stderr


def test_a_vault_answer_larger_than_rotator_reads_is_refused_unread() -> None:
    """A misconfigured address or a hostile proxy cannot make rotator hold an endless answer."""
    padding = b"x" * (MAX_ANSWER_BYTES + 1)
    vault = Recorder(
        answer=lambda _: (200, {"content-type": "application/json"}, b'{"p":"' + padding + b'"}')
    )
    store = store_for(vault.url)

    with pytest.raises(VaultError, match="more than 64 MiB"):
        store.login()

    vault.stop()
