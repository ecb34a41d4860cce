"""The Vault KV v2 store against a real OpenBao dev server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rotator.config.model import AppRoleAuth, TokenAuth, VaultConfig
from rotator.errors import VaultAuthError, VaultCasConflict, VaultPermissionDenied, VaultUnreachable
from rotator.secret import Secret
from rotator.vault import VaultStore
from rotator.vault_metadata import metadata_key
from tests.support.servers import LOOPBACK_HTTP, OpenBaoServer, free_port
from tests.support.vault_proxy import VaultProxy


def store_for(
    openbao: OpenBaoServer, token: str | None = None, *, via: VaultProxy | None = None
) -> VaultStore:
    config = VaultConfig(address=(via or openbao).address, auth=TokenAuth())
    store = VaultStore(config, Secret(token or openbao.root_token))
    store.login()
    return store


def bao_api(openbao: OpenBaoServer, method: str, path: str, json: object = None) -> httpx.Response:
    response = LOOPBACK_HTTP.request(
        method,
        f"{openbao.address}/v1/{path}",
        headers={"X-Vault-Token": openbao.root_token},
        json=json,
    )
    response.raise_for_status()
    return response


def test_creating_a_secret_uses_cas_zero_and_returns_version_one(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    store = store_for(openbao)
    assert store.write_field(f"{vault_prefix}/a", "api_key", Secret("v1-secret"), cas=0) == 1
    current = store.read(f"{vault_prefix}/a")
    assert current is not None
    assert current.version == 1
    assert current.field("api_key") == Secret("v1-secret")


def test_writing_a_field_keeps_the_other_fields(openbao: OpenBaoServer, vault_prefix: str) -> None:
    store = store_for(openbao)
    path = f"{vault_prefix}/multi"
    store.write_field(path, "other", Secret("keep-me-please"), cas=0)
    store.write_field(path, "api_key", Secret("new-key-value"), cas=1)
    current = store.read(path)
    assert current is not None
    assert current.field("other") == Secret("keep-me-please")
    assert current.field("api_key") == Secret("new-key-value")


def test_a_stale_cas_version_is_a_conflict_and_writes_nothing(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    store = store_for(openbao)
    path = f"{vault_prefix}/cas"
    store.write_field(path, "api_key", Secret("first-value"), cas=0)
    store.write_field(path, "api_key", Secret("second-value"), cas=1)
    with pytest.raises(VaultCasConflict, match="check-and-set failed"):
        store.write_field(path, "api_key", Secret("lost-update"), cas=1)
    assert store.current_version(path) == 2


def test_creating_over_an_existing_secret_is_a_conflict(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    store = store_for(openbao)
    path = f"{vault_prefix}/exists"
    store.write_field(path, "api_key", Secret("first-value"), cas=0)
    with pytest.raises(VaultCasConflict):
        store.write_field(path, "api_key", Secret("second-value"), cas=0)


def test_metadata_is_merged_and_holds_no_secret(openbao: OpenBaoServer, vault_prefix: str) -> None:
    store = store_for(openbao)
    path = f"{vault_prefix}/meta"
    store.write_field(path, "api_key", Secret("the-secret-value"), cas=0)
    store.update_metadata(path, {metadata_key("api_key", "key_id"): "k-1", "owner": "team"})
    store.update_metadata(path, {metadata_key("api_key", "key_id"): "k-2"})
    current = store.read(path)
    assert current is not None
    assert current.custom_metadata == {"rotator.api_key.key_id": "k-2", "owner": "team"}
    raw = bao_api(openbao, "GET", f"secret/metadata/{path}").text
    assert "the-secret-value" not in raw


def test_an_old_version_can_be_read_back(openbao: OpenBaoServer, vault_prefix: str) -> None:
    store = store_for(openbao)
    path = f"{vault_prefix}/versions"
    store.write_field(path, "api_key", Secret("version-one"), cas=0)
    store.write_field(path, "api_key", Secret("version-two"), cas=1)
    old = store.read(path, version=1)
    assert old is not None
    assert old.field("api_key") == Secret("version-one")


def test_a_missing_secret_reads_as_none(openbao: OpenBaoServer, vault_prefix: str) -> None:
    store = store_for(openbao)
    assert store.read(f"{vault_prefix}/absent") is None
    assert store.current_version(f"{vault_prefix}/absent") == 0


def test_merging_metadata_is_one_vault_call(
    openbao: OpenBaoServer, vault_proxy: VaultProxy, vault_prefix: str
) -> None:
    store = store_for(openbao, via=vault_proxy)
    path = f"{vault_prefix}/labelled"
    store.write_field(path, "api_key", Secret("labelled-value"), cas=0)
    store.update_metadata(path, {"owner": "team"})
    before = len(vault_proxy.calls)

    store.update_metadata(path, {metadata_key("api_key", "key_id"): "k-1"})

    assert vault_proxy.calls[before:] == [("PATCH", f"/v1/secret/metadata/{path}")]
    assert store.custom_metadata(path) == {"owner": "team", "rotator.api_key.key_id": "k-1"}


def test_a_token_that_may_not_patch_metadata_still_merges_it(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    rules = f"""
        path "secret/data/{vault_prefix}/*" {{ capabilities = ["create", "read", "update"] }}
        path "secret/metadata/{vault_prefix}/*" {{ capabilities = ["create", "read", "update"] }}
    """
    bao_api(openbao, "PUT", f"sys/policies/acl/{vault_prefix}-nopatch", {"policy": rules})
    token = bao_api(
        openbao, "POST", "auth/token/create", {"policies": [f"{vault_prefix}-nopatch"]}
    ).json()["auth"]["client_token"]
    store = store_for(openbao, token=token)
    path = f"{vault_prefix}/unpatched"
    store.write_field(path, "api_key", Secret("unpatched-value"), cas=0)

    store.update_metadata(path, {"owner": "team"})
    store.update_metadata(path, {metadata_key("api_key", "key_id"): "k-1"})

    assert store.custom_metadata(path) == {"owner": "team", "rotator.api_key.key_id": "k-1"}


def test_an_invalid_token_is_refused_at_login(openbao: OpenBaoServer) -> None:
    with pytest.raises(VaultAuthError, match="refused rotator's token login"):
        store_for(openbao, token="not-a-real-token")


def test_a_token_without_write_capability_is_permission_denied(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    bao_api(
        openbao,
        "PUT",
        f"sys/policies/acl/{vault_prefix}-ro",
        {"policy": f'path "secret/data/{vault_prefix}/*" {{ capabilities = ["read"] }}'},
    )
    token = bao_api(
        openbao, "POST", "auth/token/create", {"policies": [f"{vault_prefix}-ro"]}
    ).json()["auth"]["client_token"]
    store = store_for(openbao, token=token)
    with pytest.raises(VaultPermissionDenied, match="lacks read/create/update"):
        store.write_field(f"{vault_prefix}/denied", "api_key", Secret("value-1234"), cas=0)


def test_approle_login_gets_a_token_vault_accepts_with_the_roles_policies(
    openbao: OpenBaoServer, vault_prefix: str, tmp_path: object
) -> None:
    from pathlib import Path

    mount = f"approle-{vault_prefix}"
    bao_api(openbao, "POST", f"sys/auth/{mount}", {"type": "approle"})
    bao_api(openbao, "POST", f"auth/{mount}/role/rotator", {"token_policies": ["default"]})
    role_id = bao_api(openbao, "GET", f"auth/{mount}/role/rotator/role-id").json()["data"][
        "role_id"
    ]
    secret_id = bao_api(openbao, "POST", f"auth/{mount}/role/rotator/secret-id").json()["data"][
        "secret_id"
    ]
    secret_file = Path(str(tmp_path)) / "secret-id"
    secret_file.write_text(secret_id)
    config = VaultConfig(
        address=openbao.address,
        auth=AppRoleAuth(
            method="approle", role_id=role_id, secret_id_file=secret_file, mount_point=mount
        ),
    )
    store = VaultStore(config)
    store.login()
    store.renew_if_needed()

    # Vault answers for the AppRole token, and with the role's policy ("default"), not root's.
    assert store.capabilities(f"{vault_prefix}/anything")["data"] == {"deny"}


def test_an_unreachable_vault_says_so() -> None:
    config = VaultConfig(address=f"http://127.0.0.1:{free_port()}", auth=TokenAuth(), timeout=2)
    with pytest.raises(VaultUnreachable, match="cannot reach Vault"):
        VaultStore(config, Secret("whatever-token")).login()


def login_with_a_token_holding_a_line_break(openbao: OpenBaoServer) -> str:
    """What logging in says when the token cannot be an HTTP header value."""
    config = VaultConfig(address=openbao.address, auth=TokenAuth())
    with pytest.raises(VaultUnreachable) as refused:
        VaultStore(config, Secret("hvs.token\nwith-a-line-break")).login()
    return str(refused.value)


def test_a_vault_token_that_is_not_a_valid_header_value_is_refused_without_showing_it(
    openbao: OpenBaoServer,
) -> None:
    message = login_with_a_token_holding_a_line_break(openbao)

    assert "with-a-line-break" not in message
    assert "InvalidHeader" in message


def test_a_vault_token_that_is_not_a_valid_header_value_says_to_check_the_token(
    openbao: OpenBaoServer,
) -> None:
    message = login_with_a_token_holding_a_line_break(openbao)

    assert "line break" in message
    assert "running" not in message


class MonotonicAhead:
    """``time.monotonic``, plus whatever a test has skipped ahead instead of waiting."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


def renewals(openbao: OpenBaoServer, token: str) -> int:
    """When Vault last renewed ``token`` (0: never), from its own lookup."""
    lookup = httpx.get(
        f"{openbao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}
    )
    assert lookup.status_code == 200, "the token expired"
    return int(lookup.json()["data"].get("last_renewal_time") or 0)


def test_a_renewable_token_is_renewed_before_it_expires(
    openbao: OpenBaoServer, vault_prefix: str
) -> None:
    created = bao_api(
        openbao,
        "POST",
        "auth/token/create",
        {"ttl": "1h", "renewable": True, "policies": ["default"]},
    ).json()["auth"]["client_token"]
    clock = MonotonicAhead()
    store = VaultStore(
        VaultConfig(address=openbao.address, auth=TokenAuth()), Secret(created), clock=clock
    )
    store.login()

    assert renewals(openbao, created) == 0

    clock.ahead = 41 * 60  # past two thirds of its life, when rotator renews it
    store.renew_if_needed()
    assert renewals(openbao, created) > 0, "the token was not renewed"


def test_a_new_store_looks_its_token_up_once_before_its_first_rotation(
    openbao: OpenBaoServer, vault_proxy: VaultProxy, vault_prefix: str
) -> None:
    """The engine checks the token's renewal before each rotation; on a store not yet
    logged in, the login has just looked the token up, and that lookup is the check."""
    store = VaultStore(
        VaultConfig(address=vault_proxy.address, auth=TokenAuth()), Secret(openbao.root_token)
    )

    store.renew_if_needed()
    store.require_writable(f"{vault_prefix}/first")

    lookups = [call for call in vault_proxy.calls if call[1] == "/v1/auth/token/lookup-self"]
    assert len(lookups) == 1


def test_kubernetes_login_works(
    openbao: OpenBaoServer, vault_prefix: str, tmp_path: object
) -> None:
    from pathlib import Path

    from rotator.config.model import KubernetesAuth
    from tests.support.kubernetes_api import TokenReviewServer

    kubernetes = TokenReviewServer()
    try:
        mount = f"k8s-{vault_prefix}"
        bao_api(openbao, "POST", f"sys/auth/{mount}", {"type": "kubernetes"})
        bao_api(
            openbao,
            "POST",
            f"auth/{mount}/config",
            {
                "kubernetes_host": kubernetes.address,
                "disable_local_ca_jwt": True,
                "kubernetes_ca_cert": kubernetes.ca_certificate(Path(str(tmp_path))),
            },
        )
        bao_api(
            openbao,
            "POST",
            f"auth/{mount}/role/rotator",
            {
                "bound_service_account_names": ["rotator"],
                "bound_service_account_namespaces": ["secrets"],
                "token_policies": ["default"],
            },
        )
        jwt_file = Path(str(tmp_path)) / "token"
        jwt_file.write_text(kubernetes.issue_token("secrets", "rotator"))
        config = VaultConfig(
            address=openbao.address,
            auth=KubernetesAuth(
                method="kubernetes", role="rotator", jwt_path=jwt_file, mount_point=mount
            ),
        )
        VaultStore(config).login()
        jwt_file.write_text(kubernetes.issue_token("secrets", "intruder"))
        with pytest.raises(VaultAuthError, match="kubernetes login"):
            VaultStore(config).login()
    finally:
        kubernetes.stop()


@pytest.fixture
def forward_proxy(openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[VaultProxy]:
    proxy = VaultProxy(openbao.address)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.address)
    yield proxy
    proxy.stop()


def test_vault_calls_use_the_proxy_the_environment_names(
    openbao: OpenBaoServer, forward_proxy: VaultProxy
) -> None:
    store = store_for(openbao)
    store.read("rotator-proxy-check/missing")

    assert ("GET", "/v1/secret/data/rotator-proxy-check/missing") in forward_proxy.calls


def test_a_vault_address_in_no_proxy_bypasses_the_proxy(
    openbao: OpenBaoServer, forward_proxy: VaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    store = store_for(openbao)
    store.read("rotator-proxy-check/missing")

    assert forward_proxy.calls == []


def test_a_store_keeps_its_connections_open_for_every_thread_at_full_concurrency(
    openbao: OpenBaoServer, vault_proxy: VaultProxy, vault_prefix: str
) -> None:
    """Threads share one store: the connections of one round of calls serve the next."""
    threads = 32
    store = store_for(openbao, via=vault_proxy)
    vault_proxy.gather(threads)

    def read_all() -> int:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda n: store.read(f"{vault_prefix}/pooled-{n}"), range(threads)))
        return vault_proxy.connections

    assert read_all() == read_all()
