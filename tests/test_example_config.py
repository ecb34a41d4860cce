"""config.example.yaml, as shipped, rotates every policy against the emulators.

Only what connects rotator to servers is redirected: the database URL, Vault's
address and mount (a fresh KV v2 mount, so the example's fixed paths are this
test's own) and each provider's base_url. Policies, selectors, strategies and
credential references are the file's own; the environment variables it names
are set to the emulators' tokens, and its vault: token reference is filled
with the key it rotates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import Emulator, EmulatorServer, Slot
from tests.support.cli import invoke
from tests.support.rig import MANAGEMENT_TOKEN, migrate
from tests.support.servers import OpenBaoServer

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


class Example:
    """The example file's providers served by emulators holding the keys its policies name."""

    def __init__(self, openbao: OpenBaoServer, database_url: str, tmp: Path) -> None:
        self.text = EXAMPLE.read_text()
        self.config: dict[str, Any] = yaml.safe_load(self.text)
        self.openbao = openbao
        self.database_url = database_url
        self.tmp = tmp
        self.mount = f"example-{uuid.uuid4().hex[:8]}"
        self.servers: dict[str, EmulatorServer] = {}
        self.slots: dict[str, Slot] = {}

    def vault(self, path: str, body: dict[str, Any]) -> None:
        headers = {"X-Vault-Token": self.openbao.root_token}
        with httpx.Client(base_url=f"{self.openbao.address}/v1", headers=headers) as vault:
            vault.post(path, json=body).raise_for_status()

    def start(self) -> None:
        self.vault(f"sys/mounts/{self.mount}", {"type": "kv", "options": {"version": 2}})
        for name, entry in self.config["providers"].items():
            own_key = str(entry["token"]).startswith("vault:")
            emulator = emulator_class(entry["type"])(set() if own_key else {MANAGEMENT_TOKEN})
            self.servers[name] = EmulatorServer(emulator).start()
        for name, policy in self.config["policies"].items():
            emulator = self.servers[policy["provider"]].emulator
            self.slots[name] = emulator.seed_selector(policy["key"])
        for entry in self.config["providers"].values():
            self._store_own_key(str(entry["token"]))

    def _store_own_key(self, token: str) -> None:
        """Fill a ``vault:PATH#FIELD`` token with the key of the policy that rotates it."""
        if not token.startswith("vault:"):
            return
        path, _, field = token.removeprefix("vault:").partition("#")
        [policy] = [
            name
            for name, p in self.config["policies"].items()
            if (p["vault"]["path"], p["vault"].get("field", "api_key")) == (path, field)
        ]
        secret = self.slots[policy].secret
        self.vault(f"{self.mount}/data/{path}", {"data": {field: secret}})

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def emulator(self, policy: str) -> Emulator:
        return self.servers[self.config["policies"][policy]["provider"]].emulator

    def write(self) -> Path:
        """The example with its connections redirected to the test's servers."""
        config = yaml.safe_load(self.text)
        config["database"]["url"] = self.database_url
        config["vault"]["address"] = self.openbao.address
        config["vault"]["mount"] = self.mount
        for name, entry in config["providers"].items():
            entry["base_url"] = self.servers[name].vendor_url
        path = self.tmp / "rotator.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        named = set(re.findall(r"\$\{(\w+)\}", self.text))
        return {
            **os.environ,
            **dict.fromkeys(named, MANAGEMENT_TOKEN),
            "VAULT_TOKEN": self.openbao.root_token,
        }


@pytest.fixture
def example(openbao: OpenBaoServer, pg_url: str, tmp_path: Path) -> Iterator[Example]:
    migrate(pg_url)
    shipped = Example(openbao, pg_url, tmp_path)
    shipped.start()
    yield shipped
    shipped.stop()


def rotator(example: Example, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke([*args, "--config", str(example.write())], example.environment())


def test_example_config_validates_without_warnings_about_missing_key_ids(
    example: Example,
) -> None:
    result = rotator(example, "validate")

    assert result.returncode == 0, result.stderr
    assert "names none" not in result.stderr


def test_example_config_rotates_every_policy_as_shipped(example: Example) -> None:
    # The example keys its audit chain: an operator creates the key once, before rotating.
    keyed = rotator(example, "audit", "rotate-key")
    assert keyed.returncode == 0, keyed.stderr

    result = rotator(example, "rotate", "now", "--all", "--json")

    outcomes = {o["policy"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert set(outcomes) == set(example.config["policies"])
    unfinished = {
        name: o["message"]
        for name, o in outcomes.items()
        if o["result"] not in ("completed", "waiting")
    }
    assert not unfinished, unfinished
    assert result.returncode == 0, result.stderr
