"""``rotator sandbox``: vendor emulators on loopback, and the guided demo."""

from __future__ import annotations

import time

import click


@click.group()
def sandbox() -> None:
    """Emulated vendor APIs on 127.0.0.1, for trying rotator without real accounts."""


class _VendorChoice(click.Choice[str]):
    """Vendors with a registered emulator, plugins' too; looked up when the option is used,
    not at ``rotator --help``."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from rotator.providers.registry import known_names
        from rotator.sandbox.registry import GROUP

        return tuple(known_names(GROUP))

    @choices.setter
    def choices(self, _value: object) -> None:
        """The registry is the only source of choices."""


@sandbox.command()
@click.option(
    "--vendor",
    type=_VendorChoice(),
    default="digitalocean_gradient",
    show_default=True,
    help="Provider type whose API to emulate.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8089,
    show_default=True,
    help="Port on 127.0.0.1 to serve on (0: any free port).",
)
@click.option(
    "--token-env",
    default="SANDBOX_TOKEN",
    show_default=True,
    help="Environment variable holding the management token the emulator accepts.",
)
@click.option("--slots", type=int, default=1, show_default=True, help="Key slots to seed.")
def serve(vendor: str, port: int, token_env: str, slots: int) -> None:
    """Serve one vendor's key API with real state until interrupted.

    Prints the providers: entry and, per seeded key slot, the policy's key: mapping
    to paste into rotator.yaml.

    \b
    Control API (rotator's own, not the vendor's):
      GET  /_sandbox/state   keys and call counts per method (never a secret)
      POST /_sandbox/faults  make the next matching calls fail, with JSON
           {"method": "POST", "path": "<regex>", "status": 503, "times": 1,
            "retry_after": 2}   (status 500 and times 1 by default; 429 with
           retry_after sends Retry-After)
    """
    import os

    import yaml

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
        click.echo("providers:")
        click.echo(
            f"  sandbox: {{type: {vendor}, base_url: {server.vendor_url}, "
            f'token: "${{{token_env}}}"}}'
        )
        for number in range(1, slots + 1):
            slot = emulator.seed_slot()
            mapping = yaml.safe_dump(slot.selector, default_flow_style=True, width=1000).strip()
            click.echo(f"# key slot {number} holds key {slot.key_id}; a policy's selector:")
            click.echo(f"    key: {mapping}")
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
