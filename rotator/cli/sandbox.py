"""``rotator sandbox``: vendor emulators on loopback, and the guided demo."""

from __future__ import annotations

import time

import click


@click.group()
def sandbox() -> None:
    """Emulated vendor APIs on 127.0.0.1, for trying rotator without real accounts."""


@sandbox.command()
@click.option(
    "--vendor",
    default="digitalocean_gradient",
    show_default=True,
    help="Provider type whose API to emulate.",
)
@click.option("--port", type=int, default=8089, show_default=True)
@click.option(
    "--token-env",
    default="SANDBOX_TOKEN",
    show_default=True,
    help="Environment variable holding the management token the emulator accepts.",
)
@click.option("--slots", type=int, default=1, show_default=True, help="Key slots to seed.")
def serve(vendor: str, port: int, token_env: str, slots: int) -> None:
    """Serve one vendor's key API with real state until interrupted."""
    import os

    from rotator.errors import ConfigError
    from rotator.sandbox.registry import emulator_class
    from rotator.sandbox.server import EmulatorServer

    try:
        emulator_type = emulator_class(vendor)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    token = os.environ.get(token_env)
    if not token:
        raise click.UsageError(f"set {token_env} to the token the emulator should accept")
    emulator = emulator_type({token})
    with EmulatorServer(emulator, port=port) as server:
        click.echo(f"{vendor} emulator at {server.vendor_url} (control API: /_sandbox/state)")
        for _ in range(slots):
            slot = emulator.seed_slot()
            click.echo(f"  key slot {slot.selector} holds key {slot.key_id}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")


@sandbox.command()
def demo() -> None:
    """Start OpenBao and an emulator, rotate two keys for real, show the result, clean up."""
    from rotator.sandbox.demo import run_demo

    run_demo()
