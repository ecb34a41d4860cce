"""``rotator audit seal``, ``baseline`` and ``rotate-key``: looking after the audit chain."""

from __future__ import annotations

import click

from rotator.cli.options import config_option, load, open_store


@click.command()
@config_option
def seal(config_path: str | None) -> None:
    """Seal committed events still waiting (left by a stopped process) and anchor the head.

    Every event is sealed, even one 'audit verify' called suspicious, and a keyed event
    whose MAC does not match stays reported by verify; look at those first.
    """
    store = open_store(load(config_path))
    store.require_current_schema()
    try:
        count = store.seal()
    finally:
        store.dispose()
    click.echo(f"sealed {count} events")


@click.command()
@config_option
def baseline(config_path: str | None) -> None:
    """Record the current policy_state and unfinished rotation rows in the chain.

    For rows 'audit verify --state' cannot check (written before the chain was keyed):
    this vouches for them as they are now, so check them first ('rotator status').
    """
    store = open_store(load(config_path))
    store.require_current_schema()
    try:
        count = store.record_baseline()
        store.seal()
    finally:
        store.dispose()
    click.echo(f"recorded {count} rows in the audit chain; 'audit verify --state' checks them")


@click.command("rotate-key")
@config_option
def rotate_key(config_path: str | None) -> None:
    """Write a new version of the audit key (audit.key_path); new events use it.

    Older versions stay in Vault: verify needs them for the events they MAC.
    """
    from rotator import chain_vault
    from rotator.vault import open_vault

    config = load(config_path)
    if config.audit.key_path is None:
        raise click.UsageError("audit.key_path is not set; set it to where the key should live")
    vault = open_vault(config.vault, config.vault_token)
    version = chain_vault.rotate_key(vault, config.audit.key_path)
    click.echo(
        f"audit key {config.vault.mount}/{config.audit.key_path} is now version {version}; "
        "running rotator processes take it up within a minute"
    )
