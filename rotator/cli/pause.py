"""``rotator pause`` and ``rotator resume``: an operator holds a policy's rotations, saying why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rotator.cli.options import complete_policies, config_option, load, open_store

if TYPE_CHECKING:
    from rotator.audit.store import AuditStore


def _store_for(config_path: str | None, policy: str) -> AuditStore:
    """The audit store of the configuration that has ``policy`` (else a ConfigError)."""
    from rotator.errors import ConfigError

    config = load(config_path)
    if policy not in config.policies:
        known = ", ".join(sorted(config.policies)) or "none"
        raise ConfigError(f"no policy named {policy!r} in {config.source} (known: {known})")
    store = open_store(config)
    store.require_current_schema()
    return store


@click.command()
@config_option
@click.argument("policy", shell_complete=complete_policies)
@click.option("--reason", required=True, help="Why: shown by status, plan and rotate, audited.")
@click.option(
    "--until",
    help="End the pause by itself: a duration ('6h', '3d') or an ISO 8601 time (UTC if no zone).",
)
def pause(config_path: str | None, policy: str, reason: str, until: str | None) -> None:
    """Hold POLICY: no rotation starts on schedule, and 'rotate now' needs --force.

    A rotation already under way still finishes. Audited with who and why
    (who: the actor every audit event records, $ROTATOR_ACTOR
    when set).
    """
    from rotator.audit.actor import current_actor
    from rotator.audit.pauses import pause_policy
    from rotator.engine.pause import hold_reason, parse_until
    from rotator.errors import ConfigError

    if not reason.strip():
        raise ConfigError("--reason is empty: say why the policy is paused (e.g. a ticket)")
    try:
        ends = parse_until(until) if until is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    store = _store_for(config_path, policy)
    try:
        paused = pause_policy(
            store, policy, reason=reason.strip()[:2000], by=current_actor(), until=ends
        )
    finally:
        store.close()
    click.echo(f"{policy}: {hold_reason(True, paused)}")


@click.command()
@config_option
@click.argument("policy", shell_complete=complete_policies)
def resume(config_path: str | None, policy: str) -> None:
    """End POLICY's pause: it rotates on its schedule again (at once if already due)."""
    from rotator.audit.actor import current_actor
    from rotator.audit.pauses import resume_policy

    store = _store_for(config_path, policy)
    try:
        ended = resume_policy(store, policy, by=current_actor())
    finally:
        store.close()
    if ended is None:
        click.echo(f"{policy}: was not paused; nothing to do")
    else:
        click.echo(f"{policy}: resumed (was paused by {ended.paused_by}: {ended.reason})")
