"""``rotator reconcile`` and ``rotator validate --online``: checks that reach the servers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from rotator.cli.options import config_option, load

if TYPE_CHECKING:
    from rotator.config.loader import Config
    from rotator.vault import VaultStore


@click.command()
@config_option
@click.argument("policies", nargs=-1)
@click.option("--apply", is_flag=True, help="Revoke orphans older than the grace period.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (automation).")
@click.option(
    "--max-revocations",
    type=int,
    default=10,
    show_default=True,
    help="Refuse to revoke more than this many keys in one run.",
)
@click.option("--force", is_flag=True, help="Allow more revocations than --max-revocations.")
def reconcile(
    config_path: str | None,
    policies: tuple[str, ...],
    apply: bool,
    yes: bool,
    max_revocations: int,
    force: bool,
) -> None:
    """Compare vendor keys, Vault and the database; report orphans, strays and drift.

    Without --apply nothing is changed. With it, orphans older than the grace
    period are revoked and drift flags the policy needs_attention (and notifies);
    drift is never fixed automatically. Exit 1 when drift or an error was found.
    """
    from rotator.audit.store import utcnow
    from rotator.engine.engine import Engine
    from rotator.engine.inspection import inspect_policy
    from rotator.engine.reconcile import record_drift, revocable_orphans, revoke_orphans

    config = load(config_path)
    engine = Engine.open(config)
    now = utcnow()
    troubled = False
    try:
        names = list(policies) or sorted(config.policies)
        reports = {name: inspect_policy(engine, engine.policy(name), now) for name in names}
        plan = {name: revocable_orphans(engine.policy(name), r, now) for name, r in reports.items()}
        for name, report in reports.items():
            click.secho(name, bold=True)
            if report.error:
                troubled = True
                click.secho(f"  error: {report.error}", fg="red")
            for key in report.orphans:
                eligible = key in plan[name]
                note = "older than grace: revocable" if eligible else "younger than grace: kept"
                click.echo(f"  orphan: {key.key_id} ({key.name}), {note}")
            for key in report.strays:
                click.echo(f"  stray (not rotator's, never touched): {key.key_id} ({key.name})")
            for finding in report.drift:
                troubled = True
                click.secho(f"  DRIFT: {finding}", fg="red", bold=True)
            if not (report.error or report.orphans or report.strays or report.drift):
                click.echo("  in order")
        if apply:
            total = sum(len(keys) for keys in plan.values())
            if total > max_revocations and not force:
                raise click.UsageError(
                    f"{total} orphans would be revoked, more than --max-revocations "
                    f"{max_revocations}; check the report, then pass --force"
                )
            if total and not yes and not click.confirm(f"revoke {total} orphan keys?"):
                raise click.Abort()
            for name, keys in plan.items():
                policy = engine.policy(name)
                for key_id in revoke_orphans(engine, policy, keys):
                    click.echo(f"revoked orphan {key_id} of {name}")
                if not reports[name].error:
                    record_drift(engine, policy, reports[name])
    finally:
        engine.close()
    sys.exit(1 if troubled else 0)


def online_checks(config_path: str | None) -> bool:
    """Run every online check, printing one line each; True when all passed."""
    from rotator.audit import migrations
    from rotator.audit.store import AuditStore
    from rotator.config.credentials import VaultReference
    from rotator.errors import RotatorError
    from rotator.secret import Secret
    from rotator.vault import open_vault

    config = load(config_path)
    passed = True

    def report(ok: bool, what: str, detail: str = "") -> None:
        nonlocal passed
        passed &= ok
        mark = click.style("ok  ", fg="green") if ok else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{mark} {what}" + (f": {detail}" if detail else ""))

    store = AuditStore.open(config.database_url)
    try:
        store.require_current_schema()
        report(True, "database reachable, schema current", migrations.head_revision())
    except RotatorError as exc:
        report(False, "database", str(exc))
    finally:
        store.dispose()
    try:
        vault = open_vault(config.vault, config.vault_token)
        report(True, f"Vault login ({config.vault.auth.method}) at {config.vault.address}")
    except RotatorError as exc:
        report(False, "Vault login", str(exc))
        return False
    tokens: dict[str, Secret] = {}
    for name, settings in config.providers.items():
        try:
            credential = settings.token
            tokens[name] = (
                vault.resolve(credential) if isinstance(credential, VaultReference) else credential
            )
            report(True, f"provider {name}: credential {credential} resolves")
        except RotatorError as exc:
            report(False, f"provider {name}: credential", str(exc))
    for name, known in _keys_to_regenerate(config, vault).items():
        report(
            known is not None,
            f"policy {name}: key to regenerate",
            known or f"none named nor adopted; run 'rotator adopt {name} --key-id ID'",
        )
    checked_providers: set[str] = set()
    for name, policy in sorted(config.policies.items()):
        mount = policy.vault.mount or config.vault.mount
        caps = vault.for_mount(mount).capabilities(policy.vault.normalized_path)
        writable = {"create", "update"} <= caps["data"] or "root" in caps["data"]
        meta_ok = bool({"update", "create", "root"} & caps["metadata"])
        report(
            writable and meta_ok,
            f"policy {name}: Vault {mount}/{policy.vault.normalized_path} writable",
            "" if writable and meta_ok else f"token may only {sorted(caps['data']) or 'nothing'}",
        )
        provider_name = policy.provider_name
        if provider_name in checked_providers or provider_name not in tokens:
            continue
        checked_providers.add(provider_name)
        provider = policy.provider_class(policy.provider_settings, tokens[provider_name])
        try:
            keys = provider.list_keys(policy.selector)
            report(True, f"provider {provider_name}: token authenticates", f"{len(keys)} keys")
        except RotatorError as exc:
            report(False, f"provider {provider_name}: token", str(exc))
        finally:
            provider.close()
    return passed


def _keys_to_regenerate(config: Config, vault: VaultStore) -> dict[str, str | None]:
    """Each regenerate policy whose selector names no key: the key id rotator knows, if any."""
    from rotator.audit.store import AuditStore
    from rotator.errors import RotatorError
    from rotator.providers.base import Strategy
    from rotator.vault_metadata import metadata_key

    unnamed = {
        name: policy
        for name, policy in sorted(config.policies.items())
        if policy.strategy is Strategy.REGENERATE
        and policy.provider_class.selector_key_id(policy.selector) is None
    }
    if not unnamed:
        return {}
    found: dict[str, str | None] = {}
    store = AuditStore.open(config.database_url)
    try:
        for name, policy in unnamed.items():
            try:
                state = store.policy_state(name)
            except RotatorError:
                state = None  # the database check above already reported why
            known = state.current_key_id if state else None
            if not known:
                field = metadata_key(policy.vault.field, "key_id")
                mount = policy.vault.mount or config.vault.mount
                metadata = vault.for_mount(mount).custom_metadata(policy.vault.normalized_path)
                known = metadata.get(field) or None
            found[name] = known
    finally:
        store.dispose()
    return found
