"""Read-only commands: ``plan`` and ``audit``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from rotator.audit.records import AUDIT_OUTCOMES
from rotator.cli.options import config_option, load, open_store
from rotator.durations import format_duration
from rotator.timestamps import format_time, parse_time_or_age

if TYPE_CHECKING:
    from rotator.audit.store import AuditStore
    from rotator.engine.engine import Engine
    from rotator.providers.base import VendorKey


class TimeOrAge(click.ParamType[datetime, Any]):
    """An ISO date/datetime, or a duration meaning that long ago (``90m``, ``1h``, ``7d``)."""

    name = "TIME|AGE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time_or_age(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
        for label in ("due", "why", "current_key", "old_key_in_grace", "in_flight", "error"):
            if entry[label]:
                click.echo(f"  {label.replace('_', ' ')}: {entry[label]}")
        for label in ("calls", "warnings", "orphans", "strays", "drift"):
            for item in entry[label]:
                click.echo(f"  {label[:-1] if label != 'calls' else 'call'}: {item}")


def _plan_table(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
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
            f"{entry['due']}\n({entry['why']})",
            entry["current_key"],
            "\n".join(entry["calls"]),
            "\n".join(findings) or "-",
        )
    Console().print(table)


@click.group(invoke_without_command=True)
@config_option
@click.option("--policy", help="Only this policy's events.")
@click.option("--rotation", "rotation_id", help="Only this rotation's events.")
@click.option(
    "--since", type=TimeOrAge(), help="Events at or after this time, or this long ago (1h, 7d)."
)
@click.option(
    "--until", type=TimeOrAge(), help="Events before this time, or this long ago (90m, 1d)."
)
@click.option("--outcome", help=f"Only events with this outcome: {', '.join(AUDIT_OUTCOMES)}.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the newest N events (like tail), still oldest first.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for shipping to a SIEM.")
@click.pass_context
def audit(
    ctx: click.Context,
    config_path: str | None,
    policy: str | None,
    rotation_id: str | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Show the audit trail, oldest first (never holds a secret value); 'verify' and 'prune'
    below. An unknown --outcome is refused; an unknown --policy is warned about and still
    searched, so the events of a removed policy can be found.
    """
    if ctx.invoked_subcommand is not None:
        return
    config = load(config_path)
    store = open_store(config)
    store.require_current_schema()
    try:
        if outcome is not None and outcome not in AUDIT_OUTCOMES:
            recorded = store.recorded_outcomes()
            if outcome not in recorded:
                choices = ", ".join(sorted(set(AUDIT_OUTCOMES) | recorded))
                raise click.BadParameter(
                    f"{outcome!r} is not an outcome; use one of: {choices}",
                    param_hint="'--outcome'",
                )
        if policy is not None and policy not in config.policies:
            known = ", ".join(config.policies) or "none"
            click.secho(
                f"warning: no policy named {policy!r} in {config.source} (known: {known}); "
                "showing the events recorded under that name, if any",
                fg="yellow",
                err=True,
            )
        events = store.events(
            policy=policy,
            rotation_id=rotation_id,
            since=since,
            until=until,
            outcome=outcome,
            limit=limit,
        )
    finally:
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
                f"{format_time(event.at)} {event.policy:<16} "
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
@click.option(
    "--before",
    type=TimeOrAge(),
    required=True,
    help="Prune events older than this time, or than this long ago (e.g. 365d).",
)
@click.option("--force", is_flag=True, help="Required: pruning deletes audit history.")
def prune(config_path: str | None, before: datetime, force: bool) -> None:
    """Delete events older than --before; a summary event keeps the chain verifiable."""
    if not force:
        raise click.UsageError(
            "pruning deletes audit history an auditor may need; export it first "
            "('rotator audit --json --until DATE'), then repeat with --force"
        )
    store = _current_store(config_path)
    count = store.prune(before)
    store.dispose()
    click.echo(
        f"pruned {count} events older than {format_time(before)}; the chain stays verifiable"
    )
