"""Read-only commands: ``plan``, ``status`` and ``audit``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.options import config_option, load, open_store
from rotator.durations import format_duration

if TYPE_CHECKING:
    from rotator.audit.store import AuditStore
    from rotator.engine.engine import Engine
    from rotator.providers.base import VendorKey


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _key_label(key: VendorKey | None, now: datetime) -> str:
    if key is None:
        return "-"
    parts = [key.key_id]
    if key.created_at:
        parts.append(f"age {format_duration(now - key.created_at)}")
    if key.last_used_at:
        parts.append(f"last used {key.last_used_at:%Y-%m-%d %H:%M}")
    calls = key.extra.get("total_calls")
    if calls is not None:
        parts.append(f"{calls} calls")
    return ", ".join(parts)


def _plan_entry(engine: Engine, name: str, now: datetime) -> dict[str, Any]:
    from rotator.engine.inspection import inspect_policy
    from rotator.engine.schedule import NEVER_ROTATED, due_window

    policy = engine.policy(name)
    state = engine.store.policy_state(name)
    window = due_window(name, policy.schedule, state, now)
    if window.start == NEVER_ROTATED:
        due, why = "now", "never rotated nor adopted"
    else:
        base = "last rotation" if state and state.last_rotated_at else "adoption"
        rule = policy.schedule.cron or format_duration(policy.schedule.every or timedelta(0))
        due, why = window.start.isoformat(), f"{rule} after the {base}"
        if window.end is not None:
            why += f", within a window ending {window.end.isoformat()}"
    report = inspect_policy(engine, policy, now)
    old = report.in_flight.old_key_id if report.in_flight else None
    old_key = next((k for k in report.vendor_keys if k.key_id == old), None)
    return {
        "policy": name,
        "provider": policy.provider_name,
        "strategy": policy.strategy.value,
        "due": due,
        "why": why,
        "current_key": _key_label(report.current_key, now),
        "old_key_in_grace": _key_label(old_key, now) if old else None,
        "in_flight": report.in_flight.state if report.in_flight else None,
        "paused": engine.hold(name),
        "calls": list(engine.describe(name).calls),
        "verification": policy.provider_class.capabilities.verification,
        "warnings": report.warnings,
        "orphans": [f"{k.key_id} ({k.name})" for k in report.orphans],
        "strays": [f"{k.key_id} ({k.name})" for k in report.strays],
        "drift": report.drift,
        "error": report.error,
    }


@click.command()
@config_option
@click.argument("policies", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
def plan(config_path: str | None, policies: tuple[str, ...], as_json: bool) -> None:
    """What each policy will do: when it is due and why, the exact calls, and what is out of place.

    Read-only: lists keys at the vendor and reads Vault and the database; writes nothing.
    """
    from rotator.audit.store import utcnow
    from rotator.engine.engine import Engine

    config = load(config_path)
    engine = Engine.open(config)
    now = utcnow()
    try:
        entries = [_plan_entry(engine, name, now) for name in policies or sorted(config.policies)]
    finally:
        engine.close()
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    if sys.stdout.isatty():
        _plan_table(entries)
        return
    for entry in entries:
        click.secho(f"{entry['policy']} ({entry['provider']}, {entry['strategy']})", bold=True)
        labels = ("due", "why", "paused", "current_key", "old_key_in_grace", "in_flight", "error")
        for label in labels:
            if entry[label]:
                click.echo(f"  {label.replace('_', ' ')}: {entry[label]}")
        for label in ("calls", "warnings", "orphans", "strays", "drift"):
            for item in entry[label]:
                click.echo(f"  {label[:-1] if label != 'calls' else 'call'}: {item}")


def _plan_table(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="rotator plan", show_lines=True)
    for column in ("policy", "due", "current key", "calls", "findings"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        findings = [f"warning: {w}" for w in entry["warnings"]]
        findings += [f"orphan: {o}" for o in entry["orphans"]]
        findings += [f"stray: {o}" for o in entry["strays"]]
        findings += [f"[red]drift: {d}[/red]" for d in entry["drift"]]
        if entry["error"]:
            findings.append(f"[red]error: {entry['error']}[/red]")
        table.add_row(
            f"{entry['policy']}\n{entry['provider']}, {entry['strategy']}",
            f"{entry['due']}\n({entry['why']})"
            + (f"\n[yellow]{escape(entry['paused'])}[/yellow]" if entry["paused"] else ""),
            entry["current_key"],
            "\n".join(entry["calls"]),
            "\n".join(findings) or "-",
        )
    Console().print(table)


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def status(config_path: str | None, as_json: bool) -> None:
    """One row per policy: current key, last rotation, next due, anything in flight."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rotator.audit.pauses import pauses_in_force
    from rotator.audit.store import utcnow
    from rotator.engine.pause import hold_reason
    from rotator.engine.schedule import NEVER_ROTATED, next_due

    config = load(config_path)
    store = open_store(config)
    store.require_current_schema()
    pauses = pauses_in_force(store, utcnow())
    rows = []
    for name, policy in sorted(config.policies.items()):
        state = store.policy_state(name)
        active = store.active_rotation(name)
        history = store.rotations_for(name)
        last = history[-1] if history else None
        due = next_due(name, policy.schedule, state, utcnow())
        key_since = state and (state.last_rotated_at or state.adopted_at)
        current_key = state.current_key_id if state else None
        if active is not None and active.state in ("stored", "verified", "grace"):
            # Vault already serves the new key; the old one only waits to be revoked.
            current_key, key_since = active.new_key_id, active.updated_at
        rows.append(
            {
                "policy": name,
                "provider": policy.provider_name,
                "strategy": policy.strategy.value,
                "current_key_id": current_key,
                "key_age": format_duration(utcnow() - key_since) if key_since else None,
                "last_rotated_at": state.last_rotated_at.isoformat()
                if state and state.last_rotated_at
                else None,
                "last_outcome": last.state if last else None,
                "next_due": "now" if due == NEVER_ROTATED else due.isoformat(),
                "in_flight": active.state if active else None,
                "needs_attention": bool(active and active.needs_attention),
                "paused": hold_reason(policy.enabled, pauses.get(name)),
                "last_error": (last.last_error or "")[:120] if last else "",
            }
        )
    store.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"rotator status ({config.source})")
    for column in ("policy", "provider", "current key", "age", "last rotated", "last", "next due"):
        table.add_column(column)
    table.add_column("in flight")
    table.add_column("last error", overflow="fold")
    for row in rows:
        flight = str(row["in_flight"] or "")
        if row["needs_attention"]:
            flight += " (needs attention)"
        table.add_row(
            str(row["policy"]),
            str(row["provider"]),
            str(row["current_key_id"] or "-"),
            str(row["key_age"] or "-"),
            str(row["last_rotated_at"] or "never"),
            str(row["last_outcome"] or "-"),
            str(row["next_due"])
            + (f"\n[yellow]{escape(str(row['paused']))}[/yellow]" if row["paused"] else ""),
            flight,
            str(row["last_error"]),
        )
    Console().print(table)


@click.group(invoke_without_command=True)
@config_option
@click.option("--policy", help="Only this policy's events.")
@click.option("--rotation", "rotation_id", help="Only this rotation's events.")
@click.option("--since", help="ISO date/time: events at or after it.")
@click.option("--until", help="ISO date/time: events before it.")
@click.option("--outcome", help="Only events with this outcome (e.g. failed).")
@click.option("--limit", type=int, default=None, help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for shipping to a SIEM.")
@click.pass_context
def audit(
    ctx: click.Context,
    config_path: str | None,
    policy: str | None,
    rotation_id: str | None,
    since: str | None,
    until: str | None,
    outcome: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Show the audit trail (never holds a secret value); 'verify' and 'prune' below."""
    if ctx.invoked_subcommand is not None:
        return
    store = _current_store(config_path)
    events = store.events(
        policy=policy,
        rotation_id=rotation_id,
        since=_parse_time(since),
        until=_parse_time(until),
        outcome=outcome,
        limit=limit,
    )
    store.dispose()
    for event in events:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": event.id,
                        "at": event.at.isoformat(),
                        "policy": event.policy,
                        "rotation_id": event.rotation_id,
                        "step": event.step,
                        "outcome": event.outcome,
                        "actor": event.actor,
                        "details": event.details,
                        "hash": event.hash,
                    }
                )
            )
        else:
            details = " ".join(f"{k}={v}" for k, v in event.details.items() if v is not None)
            click.echo(
                f"{event.at:%Y-%m-%d %H:%M:%S} {event.policy:<16} "
                f"{(event.rotation_id or '-')[:8]:<8} {event.step:<9} {event.outcome:<15} "
                f"{details}"
            )


def _current_store(config_path: str | None) -> AuditStore:
    store = open_store(load(config_path))
    store.require_current_schema()
    return store


@audit.command()
@config_option
def verify(config_path: str | None) -> None:
    """Recompute the audit hash chain; exit 1 at the first broken link."""
    store = _current_store(config_path)
    report = store.verify_chain()
    store.dispose()
    if report.intact:
        click.echo(f"audit chain intact: {report.checked} events verified")
        return
    click.secho(
        f"audit chain BROKEN at event {report.broken_at}: {report.problem} "
        f"({report.checked} events before it verified)",
        fg="red",
        err=True,
    )
    sys.exit(1)


@audit.command()
@config_option
@click.option("--before", required=True, help="ISO date: prune events older than this.")
@click.option("--force", is_flag=True, help="Required: pruning deletes audit history.")
def prune(config_path: str | None, before: str, force: bool) -> None:
    """Delete events older than --before; a summary event keeps the chain verifiable."""
    if not force:
        raise click.UsageError(
            "pruning deletes audit history an auditor may need; export it first "
            "('rotator audit --json --until DATE'), then repeat with --force"
        )
    cutoff = _parse_time(before)
    assert cutoff is not None
    store = _current_store(config_path)
    count = store.prune(cutoff)
    store.dispose()
    click.echo(f"pruned {count} events older than {cutoff.isoformat()}; the chain stays verifiable")
