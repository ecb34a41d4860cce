"""``rotator reconcile`` and ``rotator validate --online``: checks that reach the servers."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from rotator.cli.options import complete_policies, config_option, load
from rotator.vocabulary import DEFAULT_MAX_REVOCATIONS

if TYPE_CHECKING:
    from rotator.config.loader import Config
    from rotator.engine.inspection import SlotReport
    from rotator.providers.base import VendorKey
    from rotator.vault import VaultStore


@click.command()
@config_option
@click.argument("policies", nargs=-1, shell_complete=complete_policies)
@click.option("--apply", is_flag=True, help="Revoke orphans older than the grace period.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (automation).")
@click.option(
    "--max-revocations",
    type=int,
    default=DEFAULT_MAX_REVOCATIONS,
    show_default=True,
    help="Refuse to revoke more than this many keys in one run.",
)
@click.option("--force", is_flag=True, help="Allow more revocations than --max-revocations.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
def reconcile(
    config_path: str | None,
    policies: tuple[str, ...],
    apply: bool,
    yes: bool,
    max_revocations: int,
    force: bool,
    as_json: bool,
) -> None:
    """Compare vendor keys, Vault and the database; report orphans, strays and drift.

    Without --apply nothing is changed. With it, orphans older than the grace
    period are revoked and drift flags the policy needs_attention (and notifies);
    drift is never fixed automatically. Keys named for another policy sharing the
    slot are reported under that policy's name. Policies come in file order.
    Exit 1 when drift or an error was found.
    """
    from rotator.engine.engine import Engine
    from rotator.errors import UnsafePlan

    config = load(config_path)
    engine = Engine.open(config)
    try:
        plan = engine.plan_reconcile(policies or config.policies, max_revocations=max_revocations)
        entries = {item.policy.name: _entry(item.report, item.revocable) for item in plan.findings}
        if not as_json:
            for entry in entries.values():
                _print_entry(entry)
        if apply:
            try:
                applied = engine.reconcile(plan, force=force)
            except UnsafePlan as exc:
                raise click.UsageError(
                    f"{exc.revocations} orphans would be revoked, more than --max-revocations "
                    f"{exc.limit}; check the report, then pass --force"
                ) from None
            total = plan.revocations
            owners = ", ".join(item.policy.name for item in plan.findings if item.revocable)
            question = f"revoke {_count(total, 'orphan key')} (of {owners})?"
            if total and not yes and not click.confirm(question, err=True):
                raise click.Abort()
            for done in applied:
                entries[done.policy]["revoked"] = done.revoked
                entries[done.policy]["attention"] = done.attention
                for key_id in done.revoked if not as_json else ():
                    click.echo(f"revoked orphan {key_id} of {done.policy}")
                if done.attention and not as_json:
                    click.secho(_attention_line(done.policy, done.attention), fg="red", bold=True)
    finally:
        engine.close()
    if as_json:
        for entry in entries.values():
            click.echo(json.dumps(entry))
    troubled = any(entry["error"] or entry["drift"] for entry in entries.values())
    sys.exit(1 if troubled else 0)


def _entry(report: SlotReport, revocable: list[VendorKey]) -> dict[str, Any]:
    """One policy's findings, as printed by --json."""
    return {
        "policy": report.policy,
        "error": report.error,
        "orphans": [
            {"key_id": k.key_id, "name": k.name, "revocable": k in revocable}
            for k in report.orphans
        ],
        "strays": [{"key_id": k.key_id, "name": k.name} for k in report.strays],
        "other_policies_keys": [
            {"key_id": k.key_id, "name": k.name, "policy": owner} for owner, k in report.others
        ],
        "drift": report.drift,
        "revoked": [],
        "attention": None,
    }


def _print_entry(entry: dict[str, Any]) -> None:
    click.secho(entry["policy"], bold=True)
    if entry["error"]:
        click.secho(f"  error: {entry['error']}", fg="red")
    for key in entry["orphans"]:
        note = "older than grace: revocable" if key["revocable"] else "younger than grace: kept"
        click.echo(f"  orphan: {key['key_id']} ({key['name']}), {note}")
    for key in entry["other_policies_keys"]:
        click.echo(f"  another policy's ({key['policy']}): {key['key_id']} ({key['name']})")
    for key in entry["strays"]:
        click.echo(f"  stray (not rotator's, never touched): {key['key_id']} ({key['name']})")
    for finding in entry["drift"]:
        click.secho(f"  DRIFT: {finding}", fg="red", bold=True)
    if not any(entry[k] for k in ("error", "orphans", "other_policies_keys", "strays", "drift")):
        click.echo("  in order")


def _attention_line(policy: str, change: str) -> str:
    if change == "flagged":
        return (
            f"flagged {policy} needs_attention: not rotated on schedule until someone runs "
            f"'rotator rotate now {policy}'"
        )
    return f"cleared {policy}'s needs_attention flag: no drift is left"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
    report(*audit_key_check(config, vault))
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
    for name, policy in config.policies.items():
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


class Check(NamedTuple):
    """One online check's line: passed or not, what was checked, and a detail."""

    ok: bool
    what: str
    detail: str = ""


def audit_key_check(config: Config, vault: VaultStore) -> Check:
    """Whether the audit chain's key can be read (no key configured passes, with a note)."""
    from rotator.chain_vault import chain_trust
    from rotator.errors import RotatorError

    trust = chain_trust(config, lambda: vault)
    if trust is None:
        return Check(True, "audit chain", "unkeyed (audit.key_path is not set)")
    try:
        version, _ = trust.current_key()
    except RotatorError as exc:
        return Check(False, "audit key", str(exc))
    return Check(True, f"audit key {config.audit.key_path} readable", f"version {version}")
