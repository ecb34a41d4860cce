"""A provider token given as ``file:`` follows the file (a mounted Kubernetes Secret, a sidecar).

One engine stands for a long-running daemon: the vendor stops accepting the
old token, the file gets the new one, and the next rotation works.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rotator.vocabulary import Result
from tests.support.rig import MANAGEMENT_TOKEN, Rig

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"
NEW_TOKEN = "sandbox-management-token-9876543210"


def file_token_rig(rig_factory: RigFactory) -> tuple[Rig, Path]:
    rig = rig_factory(VENDOR)
    rig.add_policy("one", strategy="create_then_delete")
    rig.add_policy("two", strategy="create_then_delete")
    token_file = rig.tmp / "provider-token"
    token_file.write_text(MANAGEMENT_TOKEN + "\n")
    text = rig.config_path.read_text()
    rig.config_path.write_text(text.replace('"${SANDBOX_TOKEN}"', f'"file:{token_file}"'))
    return rig, token_file


def test_a_provider_token_file_that_changed_is_used_without_a_restart(
    rig_factory: RigFactory,
) -> None:
    rig, token_file = file_token_rig(rig_factory)
    engine = rig.engine()
    try:
        assert engine.rotate_now("one").result is Result.WAITING
        rig.emulator.tokens = {NEW_TOKEN}
        token_file.write_text(NEW_TOKEN + "\n")

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.WAITING, outcome.message


def test_a_vendor_401_rereads_the_provider_token_file_even_when_it_looks_unchanged(
    rig_factory: RigFactory,
) -> None:
    rig, token_file = file_token_rig(rig_factory)
    engine = rig.engine()
    try:
        engine.rotate_now("one")
        stamp = token_file.stat()
        assert len(NEW_TOKEN) == len(MANAGEMENT_TOKEN)
        rig.emulator.tokens = {NEW_TOKEN}
        token_file.write_text(NEW_TOKEN + "\n")
        os.utime(token_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.WAITING, outcome.message


def test_a_vendor_401_with_no_new_token_still_fails_with_the_vendors_answer(
    rig_factory: RigFactory,
) -> None:
    rig, _token_file = file_token_rig(rig_factory)
    engine = rig.engine()
    try:
        engine.rotate_now("one")
        rig.emulator.tokens = {NEW_TOKEN}

        outcome = engine.rotate_now("two")
    finally:
        engine.close()

    assert outcome.result is Result.FAILED
    assert "check the provider's token" in outcome.message
