"""A test rig: one vendor emulator, OpenBao, a fresh database, and rotator as users run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from rotator.audit import migrations
from rotator.audit.store import AuditStore, utcnow
from rotator.config.loader import load_config
from rotator.engine.engine import Engine
from rotator.providers.registry import VENDORS, provider_class
from rotator.sandbox.server import Emulator, EmulatorServer, Slot
from rotator.secret import Secret
from rotator.vocabulary import Outcome
from tests.support.cli import invoke
from tests.support.contracts import ContractValidator
from tests.support.forkserver import Child, start_rotator
from tests.support.servers import LOOPBACK_HTTP, OpenBaoServer

MANAGEMENT_TOKEN = "sandbox-management-token-0123456789"


def contract_for(emulator: type[Emulator]) -> ContractValidator | None:
    """A validator for the OpenAPI document the emulator names, if the vendor publishes one."""
    if emulator.openapi_spec is None:
        return None
    return ContractValidator(
        emulator.openapi_spec, unlisted_statuses=emulator.openapi_unlisted_statuses
    )


def vendor_strategies() -> list[tuple[str, str]]:
    """Every (vendor, strategy) pair the registered providers support."""
    return [
        (vendor, strategy.value)
        for vendor in sorted(VENDORS)
        for strategy in sorted(provider_class(vendor).capabilities.strategies)
    ]


def vendors_supporting(strategy: str) -> list[str]:
    """The registered vendors whose provider offers ``strategy``."""
    return [vendor for vendor, offered in vendor_strategies() if offered == strategy]


def vendors_that_verify(strategy: str) -> list[str]:
    """Vendors offering ``strategy`` whose provider can verify a new key."""
    return [v for v in vendors_supporting(strategy) if provider_class(v).capabilities.can_verify]


@dataclass
class PolicySpec:
    name: str
    strategy: str
    slot: Slot
    grace: str
    vault_path: str
    every: str = "30d"
    #: A ``revoke_when_unused`` flow mapping, e.g. ``{quiet: 2s, max_extension: 4s}``.
    revoke_when_unused: str = ""


@dataclass
class Rig:
    tmp: Path
    database_url: str
    openbao: OpenBaoServer
    vendor: str
    server: EmulatorServer
    vault_prefix: str
    policies: dict[str, PolicySpec] = field(default_factory=dict)
    #: Where rotator reaches Vault (a holding proxy in crash tests); OpenBao by default.
    vault_address: str | None = None
    provider_timeout: float = 5.0
    #: Extra top-level YAML (daemon:, notifications:) appended to the configuration.
    extra_config: str = ""
    #: Extra keys of the ``vault:`` section, e.g. ``{"write_retry_for": "2s"}``.
    vault_settings: dict[str, str] = field(default_factory=dict)
    #: Extra keys of the provider's entry, e.g. ``{"retry_for": "0s"}``.
    provider_settings: dict[str, str] = field(default_factory=dict)
    #: The flow under test when the rig comes from the parametrised ``rig`` fixture.
    strategy: str = "create_then_delete"

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    @property
    def config_path(self) -> Path:
        return self.tmp / "rotator.yaml"

    def add_policy(
        self, name: str, *, strategy: str, grace: str = "1h", every: str = "30d"
    ) -> PolicySpec:
        """Seed a key slot at the vendor and put its existing key in Vault as version 1."""
        slot = self.emulator.seed_slot()
        path = f"{self.vault_prefix}/{name}"
        self.vault_api("POST", f"secret/data/{path}", {"data": {"api_key": slot.secret}})
        spec = PolicySpec(name, strategy, slot, grace, path, every)
        self.policies[name] = spec
        self.write_config()
        return spec

    def write_config(self) -> Path:
        policies = "\n".join(
            textwrap.indent(
                textwrap.dedent(
                    f"""\
                    {p.name}:
                      provider: sandbox
                      key: {_flow(p.slot.selector)}
                      strategy: {p.strategy}
                      schedule: {{every: {p.every}}}
                      grace_period: {p.grace}
                      vault: {{path: {p.vault_path}, field: api_key}}
                    """
                )
                + (
                    f"  revoke_when_unused: {p.revoke_when_unused}\n"
                    if p.revoke_when_unused
                    else ""
                ),
                "  ",
            )
            for p in self.policies.values()
        )
        # Each extra line ends in the template's indentation, which dedent then removes.
        vault_extra = "".join(f"  {k}: {v}\n{' ' * 16}" for k, v in self.vault_settings.items())
        provider_extra = "".join(f"\n{' ' * 20}{k}: {v}" for k, v in self.provider_settings.items())
        self.config_path.write_text(
            textwrap.dedent(
                f"""\
                database: {{url: "{self.database_url}"}}
                vault:
                  address: {self.vault_address or self.openbao.address}
                  auth: {{method: token, token: "${{TEST_VAULT_TOKEN}}"}}
                {vault_extra}providers:
                  sandbox:
                    type: {self.vendor}
                    token: "${{SANDBOX_TOKEN}}"
                    base_url: {self.server.vendor_url}
                    timeout: {self.provider_timeout}{provider_extra}
                policies:
                """
            )
            + policies
            + "\n"
            + textwrap.dedent(self.extra_config)
        )
        return self.config_path

    # -- running rotator ------------------------------------------------------

    @property
    def rotator_env(self) -> dict[str, str]:
        """What rotator's configuration reads from the environment, beyond the test's own."""
        return {
            "TEST_VAULT_TOKEN": self.openbao.root_token,
            "SANDBOX_TOKEN": MANAGEMENT_TOKEN,
            "ROTATOR_CONFIG": str(self.config_path),
        }

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.rotator_env}

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``rotator ARGS`` in this process (tests/support/cli.py): output and exit code."""
        return invoke(args, {**self.rotator_env, **(env or {})})

    def run_process(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m rotator ARGS`` in a process of its own, for where that boundary matters."""
        return subprocess.run(
            [sys.executable, "-m", "rotator", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )

    def run_on_terminal(
        self, command: str, *, columns: int = 200, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rotator COMMAND`` under a pseudo-terminal (``script``); stdout is the screen."""
        return subprocess.run(
            ["script", "-qec", f"{sys.executable} -m rotator {command}", "/dev/null"],
            capture_output=True,
            text=True,
            env={**self.env, "COLUMNS": str(columns), **(env or {})},
            timeout=120,
        )

    def spawn(self, *args: str) -> Child:
        """Start ``python -m rotator ARGS``, its output piped: a kill, race or signal target.

        Forked from a process that has imported rotator already (tests/support/forkserver.py).
        """
        return start_rotator(args, self.env)

    def kill(self, process: Child) -> None:
        """SIGKILL ``process`` and wait until the database has let go of its sessions.

        PostgreSQL releases a dead client's advisory locks only once its backend has seen
        the connection close; a restart at once could still find the policy locked.
        """
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        if self.database_url.startswith("postgresql"):
            wait_for_no_advisory_locks(self.database_url)

    def engine(self, clock: Callable[[], datetime] = utcnow) -> Engine:
        """The engine of this configuration, in process; ``clock`` for one that runs ahead."""
        os.environ.setdefault("TEST_VAULT_TOKEN", self.openbao.root_token)
        os.environ.setdefault("SANDBOX_TOKEN", MANAGEMENT_TOKEN)
        return Engine.open(load_config(self.config_path, provider_class), clock=clock)

    @contextmanager
    def engine_ahead(self, **after: float) -> Iterator[Engine]:
        """The engine as it will run ``after`` (e.g. ``hours=1``) from now.

        Its clock runs ahead instead of the test sleeping: the grace periods and backoffs
        it compares with its clock are over; everything else (vendor, Vault, database) is
        as now.
        """
        ahead = timedelta(**after)
        engine = self.engine(clock=lambda: utcnow() + ahead)
        try:
            yield engine
        finally:
            engine.close()

    def later(self, policy: str, **after: float) -> Outcome:
        """``rotate due`` for ``policy`` as it will run ``after`` from now (``engine_ahead``)."""
        with self.engine_ahead(**after) as engine:
            return engine.rotate_if_due(policy)

    def store(self) -> AuditStore:
        return AuditStore.open(Secret(self.database_url))

    def completed_rotations(self, policy: str) -> int:
        store = self.store()
        count = sum(1 for r in store.rotations_for(policy) if r.state == "completed")
        store.dispose()
        return count

    def fail_every_create(self) -> None:
        """The vendor answers every key creation with 503 from now on (an outage at mint)."""
        method, path = self.emulator.operations["create"]
        self.server.fail(method, path, status=503, times=10_000)

    def one_attempt_left(self, policy: str) -> None:
        """``policy``'s rotation fails at mint and is due again with one attempt left (of 5).

        The backoff is cleared in the database, so the next scheduled run makes the last attempt.
        """
        self.add_policy(policy, strategy="create_then_delete", grace="0s")
        self.fail_every_create()
        self.run("rotate", "due")
        store = self.store()
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE rotations SET attempts = 4, next_attempt_at = NULL "
                    "WHERE policy = :policy"
                ),
                {"policy": policy},
            )
        store.dispose()

    # -- observing ------------------------------------------------------------

    def vault_api(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = LOOPBACK_HTTP.request(
            method,
            f"{self.openbao.address}/v1/{path}",
            headers={"X-Vault-Token": self.openbao.root_token},
            json=json,
        )
        response.raise_for_status()
        return response.json() if response.content else {}

    def vault_secret(self, name: str) -> str:
        data = self.vault_api("GET", f"secret/data/{self.policies[name].vault_path}")
        return str(data["data"]["data"]["api_key"])

    def vault_version(self, name: str) -> int:
        data = self.vault_api("GET", f"secret/data/{self.policies[name].vault_path}")
        return int(data["data"]["metadata"]["version"])

    def vault_metadata(self, name: str) -> dict[str, str]:
        data = self.vault_api("GET", f"secret/metadata/{self.policies[name].vault_path}")
        return dict(data["data"]["custom_metadata"] or {})

    def live_keys(self, name: str) -> list[str]:
        return self.emulator.live_key_ids(self.policies[name].slot.selector)

    def vendor_accepts(self, name: str, secret: str) -> bool:
        return self.emulator.accepts(self.policies[name].slot.selector, secret)


def _usage_line(spec: PolicySpec) -> str:
    usage = spec.revoke_when_unused
    return f"  revoke_when_unused: {usage}\n" if usage else ""


def _flow(selector: dict[str, Any]) -> str:
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in selector.items()) + "}"


def migrate(database_url: str) -> None:
    store = AuditStore.open(Secret(database_url))
    migrations.upgrade(store.engine)
    store.dispose()


def wait_for_no_advisory_locks(database_url: str, timeout: float = 30) -> None:
    """Wait until no session holds an advisory lock in ``database_url``'s database."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    ends = time.monotonic() + timeout
    store = AuditStore.open(Secret(database_url))
    try:
        with store.engine.connect() as connection:
            while connection.execute(query).scalar_one():
                if time.monotonic() > ends:
                    raise AssertionError(f"advisory locks still held {timeout} s after the kill")
                time.sleep(0.01)
    finally:
        store.dispose()
