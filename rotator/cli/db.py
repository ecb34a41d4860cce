"""``rotator db``: schema migrations of the audit database."""

from __future__ import annotations

import click

from rotator.cli.options import config_option, load, open_store


@click.group()
def db() -> None:
    """Manage the audit database schema."""


@db.command()
@config_option
@click.argument("revision", default="head")
def upgrade(config_path: str | None, revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from rotator.audit import migrations

    store = open_store(load(config_path))
    with store.transaction():
        pass
    migrations.upgrade(store.engine, revision)
    click.echo(f"database schema at revision {migrations.current_revision(store.engine)}")


@db.command()
@config_option
@click.argument("revision")
@click.option("--force", is_flag=True, help="Required when the downgrade deletes audit data.")
def downgrade(config_path: str | None, revision: str, force: bool) -> None:
    """Revert migrations down to REVISION ('base' empties the schema)."""
    from rotator.audit import migrations

    store = open_store(load(config_path))
    lost = migrations.lost_by_downgrade(store.engine, revision)
    if lost and not force:
        raise click.UsageError(
            f"downgrading to {revision} deletes audit data an auditor may need: "
            + "; ".join(lost)
            + ". Export it first ('rotator audit --json'), then repeat with --force"
        )
    migrations.downgrade(store.engine, revision)
    click.echo(f"database schema at revision {migrations.current_revision(store.engine) or 'base'}")


@db.command()
@config_option
def current(config_path: str | None) -> None:
    """Show the schema revision of the database and the one this rotator needs."""
    from rotator.audit import migrations

    store = open_store(load(config_path))
    with store.transaction():
        pass
    click.echo(
        f"database: {migrations.current_revision(store.engine) or 'empty'}; "
        f"this rotator needs: {migrations.head_revision()}"
    )
