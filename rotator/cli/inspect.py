"""``rotator audit``: the audit trail, its hash chain, and pruning it."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.audit.records import AUDIT_OUTCOMES
from rotator.cli.options import complete_policies, config_option, load, open_store
from rotator.timestamps import format_time, parse_time_or_age

if TYPE_CHECKING:
    from rotator.audit.store import AuditStore


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


@click.group(invoke_without_command=True)
@config_option
@click.option("--policy", help="Only this policy's events.", shell_complete=complete_policies)
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
@click.option(
    "--state", is_flag=True, help="Also check the rotations and policy_state rows against it."
)
def verify(config_path: str | None, state: bool) -> None:
    """Check the audit chain, read-only; exit 1 at the first broken link or suspicious event."""
    store = _current_store(config_path)
    report = store.verify_chain(state=state)
    store.dispose()
    for note in report.notes:
        click.secho(f"warning: {note}", fg="yellow", err=True)
    if report.intact:
        keyed = "keyed, anchored in Vault" if report.keyed else "unkeyed"
        rows = ", rows match it" if state else ""
        click.echo(f"audit chain intact ({keyed}): {report.checked} events verified{rows}")
        return
    problems = list(report.problems)
    if report.broken_at is not None:
        click.secho(
            f"audit chain BROKEN at {problems.pop(0)} ({report.checked} events before it verified)",
            fg="red",
            err=True,
        )
    for problem in problems:
        click.secho(f"audit chain NOT INTACT: {problem}", fg="red", err=True)
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
