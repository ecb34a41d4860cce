"""Read-only commands: ``plan``, ``status`` and ``audit``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from rotator.cli.options import config_option, load, open_store
from rotator.cli.output import print_outcome


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command()
@config_option
@click.argument("policies", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
def plan(config_path: str | None, policies: tuple[str, ...], as_json: bool) -> None:
    """Show, for each policy, when it is due and the exact calls a rotation would make.

    Makes no vendor call and no write.
    """
    from rotator.audit.store import utcnow
    from rotator.engine.engine import Engine
    from rotator.engine.schedule import NEVER_ROTATED, next_due

    config = load(config_path)
    engine = Engine.open(config)
    try:
        for name in policies or sorted(config.policies):
            policy = engine.policy(name)
            due = next_due(name, policy.schedule, engine.store.policy_state(name), utcnow())
            outcome = engine.describe(name)
            when = "now (never rotated)" if due == NEVER_ROTATED else due.isoformat()
            warnings = policy.provider_class.policy_warnings(
                policy.selector, policy.strategy, policy.grace_period
            )
            message = f"due {when}" + "".join(f"; warning: {w}" for w in warnings)
            print_outcome(
                type(outcome)(name, outcome.result, message, calls=outcome.calls), as_json=as_json
            )
    finally:
        engine.close()


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def status(config_path: str | None, as_json: bool) -> None:
    """One row per policy: current key, last rotation, next due, anything in flight."""
    from rich.console import Console
    from rich.table import Table

    from rotator.audit.store import utcnow
    from rotator.engine.schedule import NEVER_ROTATED, next_due

    config = load(config_path)
    store = open_store(config)
    store.require_current_schema()
    rows = []
    for name, policy in sorted(config.policies.items()):
        state = store.policy_state(name)
        active = store.active_rotation(name)
        history = store.rotations_for(name)
        last = history[-1] if history else None
        due = next_due(name, policy.schedule, state, utcnow())
        rows.append(
            {
                "policy": name,
                "provider": policy.provider_name,
                "strategy": policy.strategy.value,
                "current_key_id": state.current_key_id if state else None,
                "last_rotated_at": state.last_rotated_at.isoformat()
                if state and state.last_rotated_at
                else None,
                "last_outcome": last.state if last else None,
                "next_due": "now" if due == NEVER_ROTATED else due.isoformat(),
                "in_flight": active.state if active else None,
                "needs_attention": bool(active and active.needs_attention),
                "last_error": (last.last_error or "")[:120] if last else "",
            }
        )
    store.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"rotator status ({config.source})")
    for column in ("policy", "provider", "current key", "last rotated", "last", "next due"):
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
            str(row["last_rotated_at"] or "never"),
            str(row["last_outcome"] or "-"),
            str(row["next_due"]),
            flight,
            str(row["last_error"]),
        )
    Console().print(table)


@click.command()
@config_option
@click.option("--policy", help="Only this policy's events.")
@click.option("--rotation", "rotation_id", help="Only this rotation's events.")
@click.option("--since", help="ISO date/time: events at or after it.")
@click.option("--until", help="ISO date/time: events before it.")
@click.option("--outcome", help="Only events with this outcome (e.g. failed).")
@click.option("--limit", type=int, default=None, help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for shipping to a SIEM.")
def audit(
    config_path: str | None,
    policy: str | None,
    rotation_id: str | None,
    since: str | None,
    until: str | None,
    outcome: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Show the audit trail (never holds a secret value)."""
    config = load(config_path)
    store = open_store(config)
    store.require_current_schema()
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
