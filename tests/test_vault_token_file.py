"""rotator's Vault token from a file that changes (Vault Agent re-issuing it), with a real OpenBao.

One engine stands for a long-running daemon: it is never restarted while the
token behind it is revoked and replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rotator.engine.engine import Engine
from rotator.vocabulary import Result
from tests.support.rig import Rig
from tests.test_daemon import RunningDaemon, wait_until

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


def issue_token(rig: Rig, uses: int = 0) -> str:
    body = {"policies": ["root"], "ttl": "1h", "num_uses": uses, "no_parent": True}
    return str(rig.vault_api("POST", "auth/token/create", body)["auth"]["client_token"])


def revoke_token(rig: Rig, token: str) -> None:
    rig.vault_api("POST", "auth/token/revoke", {"token": token})


def uses_left(rig: Rig, token: str) -> int:
    return int(rig.vault_api("POST", "auth/token/lookup", {"token": token})["data"]["num_uses"])


def token_file_rig(rig_factory: RigFactory) -> tuple[Rig, Path, str]:
    rig = rig_factory(VENDOR)
    rig.add_policy("one", strategy="create_then_delete")
    rig.add_policy("two", strategy="create_then_delete")
    token = issue_token(rig)
    token_file = rig.tmp / "vault-token"
    token_file.write_text(token + "\n")
    text = rig.config_path.read_text()
    auth = 'auth: {method: token, token: "${TEST_VAULT_TOKEN}"}'
    assert auth in text
    rig.config_path.write_text(
        text.replace(auth, f"auth: {{method: token, token_file: {token_file}}}")
    )
    return rig, token_file, token


def test_a_token_file_rewritten_after_a_revoke_is_used_without_a_restart(
    rig_factory: RigFactory,
) -> None:
    rig, token_file, old = token_file_rig(rig_factory)
    engine: Engine = rig.engine()
    try:
        assert engine.rotate_now("one").result is Result.WAITING
        revoke_token(rig, old)
        token_file.write_text(issue_token(rig) + "\n")

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.WAITING, outcome.message
    assert rig.vault_version("two") == 2


def test_a_changed_token_file_is_read_before_the_next_call(rig_factory: RigFactory) -> None:
    rig, token_file, _old = token_file_rig(rig_factory)
    engine = rig.engine()
    try:
        engine.rotate_now("one")
        new = issue_token(rig, uses=1000)
        token_file.write_text(new + "\n")

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.WAITING, outcome.message
    assert uses_left(rig, new) < 1000, "the old token still works, yet the new one is used"


def test_a_403_rereads_the_token_file_even_when_it_looks_unchanged(
    rig_factory: RigFactory,
) -> None:
    rig, token_file, old = token_file_rig(rig_factory)
    engine = rig.engine()
    try:
        engine.rotate_now("one")
        stamp = token_file.stat()
        revoke_token(rig, old)
        new = issue_token(rig)
        assert len(new) == len(old)
        token_file.write_text(new + "\n")
        os.utime(token_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.WAITING, outcome.message


def test_a_403_with_no_new_token_fails_after_one_reread_and_says_what_to_do(
    rig_factory: RigFactory,
) -> None:
    rig, _token_file, old = token_file_rig(rig_factory)
    engine = rig.engine()
    try:
        engine.rotate_now("one")
        revoke_token(rig, old)

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.FAILED
    assert "denied" in outcome.message
    assert rig.vault_version("two") == 1


def test_the_daemon_keeps_rotating_after_its_token_file_is_replaced(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("fast", strategy="create_then_delete", grace="1s", every="4s")
    daemon = RunningDaemon(rig)
    old = issue_token(rig)
    token_file = rig.tmp / "vault-token"
    token_file.write_text(old + "\n")
    text = rig.config_path.read_text()
    auth = 'auth: {method: token, token: "${TEST_VAULT_TOKEN}"}'
    rig.config_path.write_text(
        text.replace(auth, f"auth: {{method: token, token_file: {token_file}}}")
    )
    daemon.start()
    try:
        wait_until(lambda: rig.vault_version("fast") >= 2)
        revoke_token(rig, old)
        token_file.write_text(issue_token(rig) + "\n")

        wait_until(lambda: rig.vault_version("fast") >= 3, timeout=60)
    finally:
        daemon.stop()
