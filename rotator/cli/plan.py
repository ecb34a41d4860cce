"""``rotator plan``: what each policy will do, when and why, and what is out of place.

One entry per policy in machine values (``--json``: seconds, ISO 8601 UTC, null
for unknown), rendered for people as one block per policy (in a pipe and on a
narrow terminal, where a table would split ids and URLs over many lines) or as
a table on a wide terminal.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.options import complete_policies, config_option, load
from rotator.durations import format_duration
from rotator.timestamps import format_time

if TYPE_CHECKING:
    from rotator.engine.engine import Engine
    from rotator.providers.base import VendorKey

#: Narrower terminals get one block per policy instead of the table.
TABLE_MIN_COLUMNS = 160
_SINGULAR = {
    "calls": "call",
    "warnings": "warning",
    "orphans": "orphan",
    "strays": "stray",
    "drift": "drift",
}


@click.command()
@config_option
@click.argument("policies", nargs=-1, shell_complete=complete_policies)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object of machine values per policy."
)
def plan(config_path: str | None, policies: tuple[str, ...], as_json: bool) -> None:
    """What each policy will do: when it is due and why, the exact calls, and what is out of place.

    Read-only: lists keys at the vendor and reads Vault and the database; writes nothing.
    One block per policy; a table on a terminal at least 160 columns wide.
    """
    from rotator.audit.store import utcnow
    from rotator.engine.engine import Engine

    config = load(config_path)
    engine = Engine.open(config)
    now = utcnow()
    try:
        entries = [plan_entry(engine, name, now) for name in policies or config.policies]
    finally:
        engine.close()
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
    elif sys.stdout.isatty() and shutil.get_terminal_size().columns >= TABLE_MIN_COLUMNS:
        _table(entries)
    else:
        for entry in entries:
            _block(entry)


def plan_entry(engine: Engine, name: str, now: datetime) -> dict[str, Any]:
    """One policy's plan, in machine values."""
    from rotator.engine.inspection import explain_due, inspect_policy

    policy = engine.policy(name)
    report = inspect_policy(engine, policy, now)
    due, why = explain_due(engine, policy, now)
    flight = report.in_flight
    first_use = report.new_key_first_used_at
    return {
        "policy": name,
        "provider": policy.provider_name,
        "strategy": policy.strategy.value,
        "due": format_time(due) if due else None,
        "due_now": due is not None and due <= now,
        "why": why,
        "current_key": _key(report.current_key, now),
        "old_key_in_grace": _key(report.old_key_in_grace, now),
        "new_key_first_used_at": format_time(first_use) if first_use else None,
        "in_flight": flight.state if flight else None,
        "rotation_id": flight.id if flight else None,
        "paused": engine.hold(name),
        "calls": list(engine.describe(name, trigger="schedule").calls),
        "verification": policy.provider_class.capabilities.verification,
        "warnings": report.warnings,
        "orphans": [{"key_id": k.key_id, "name": k.name} for k in report.orphans],
        "strays": [{"key_id": k.key_id, "name": k.name} for k in report.strays],
        "drift": report.drift,
        "error": report.error,
    }


def _key(key: VendorKey | None, now: datetime) -> dict[str, Any] | None:
    if key is None:
        return None
    return {
        "key_id": key.key_id,
        "name": key.name,
        "age_seconds": int((now - key.created_at).total_seconds()) if key.created_at else None,
        "last_used_at": format_time(key.last_used_at) if key.last_used_at else None,
        "total_calls": key.extra.get("total_calls"),
    }


def _key_label(key: dict[str, Any] | None) -> str:
    if key is None:
        return "-"
    parts = [key["key_id"]]
    if key["age_seconds"] is not None:
        parts.append(f"age {format_duration(timedelta(seconds=key['age_seconds']))}")
    if key["last_used_at"]:
        parts.append(f"last used {key['last_used_at']}")
    if key["total_calls"] is not None:
        parts.append(f"{key['total_calls']} calls")
    return ", ".join(parts)


def _human(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines of one entry, in reading order."""
    lines = [
        ("due", entry["due"] if not entry["due_now"] else "now"),
        ("why", entry["why"]),
        ("current key", _key_label(entry["current_key"])),
    ]
    if entry["paused"]:
        lines.insert(2, ("paused", entry["paused"]))
    if entry["due"] is None:
        lines[0] = ("due", "not on schedule")
    if entry["old_key_in_grace"]:
        lines.append(("old key in grace", _key_label(entry["old_key_in_grace"])))
    if entry["new_key_first_used_at"]:
        lines.append(("consumers", f"new key first used at {entry['new_key_first_used_at']}"))
    if entry["in_flight"]:
        lines.append(("in flight", f"{entry['in_flight']} (rotation {entry['rotation_id']})"))
    if entry["error"]:
        lines.append(("error", entry["error"]))
    for field, label in _SINGULAR.items():
        for item in entry[field]:
            text = f"{item['key_id']} ({item['name']})" if isinstance(item, dict) else item
            lines.append((label, text))
    return lines


def _block(entry: dict[str, Any]) -> None:
    click.secho(f"{entry['policy']} ({entry['provider']}, {entry['strategy']})", bold=True)
    for label, text in _human(entry):
        colour = "red" if label in ("drift", "error") else None
        click.secho(f"  {label}: {text}", fg=colour)


def _table(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="rotator plan", show_lines=True)
    for column in ("policy", "due", "current key", "calls", "findings"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        lines = dict(_human(entry))
        findings = [
            f"[red]{label}: {escape(text)}[/red]"
            if label in ("drift", "error")
            else f"{label}: {escape(text)}"
            for label, text in _human(entry)
            if label in ("warning", "orphan", "stray", "drift", "error")
        ]
        table.add_row(
            f"{entry['policy']}\n{entry['provider']}, {entry['strategy']}",
            f"{lines['due']}\n({escape(entry['why'])})"
            + (f"\n[yellow]{escape(entry['paused'])}[/yellow]" if entry["paused"] else ""),
            escape(lines["current key"])
            + (f"\n{escape(lines['consumers'])}" if "consumers" in lines else ""),
            escape("\n".join(entry["calls"])),
            "\n".join(findings) or "-",
        )
    Console().print(table)
