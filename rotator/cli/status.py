"""``rotator status``: where each policy stands, and every reason it will not rotate on time.

Three renderings of one set of rows: a table on a terminal (names never cut),
tab-separated lines with a header in a pipe (``grep``, ``cut``, ``awk``), and
JSON lines of machine values (seconds, ISO 8601 UTC, null for unknown).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.options import config_option, load, open_store
from rotator.durations import format_duration
from rotator.timestamps import format_time
from rotator.vocabulary import State

if TYPE_CHECKING:
    from rotator.engine.standing import Standing

_COLUMNS = (
    "policy",
    "provider",
    "strategy",
    "current_key",
    "key_age",
    "last_rotated",
    "last_outcome",
    "next_due",
    "in_flight",
    "blocked_by",
    "last_error",
)


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines of machine values.")
def status(config_path: str | None, as_json: bool) -> None:
    """One row per policy: current key, last rotation, next due, anything in flight,
    and every reason it will not rotate on schedule (needs attention, retry pending,
    lock held, paused). A table on a terminal, tab-separated lines with a header in a pipe.
    """
    from rotator.audit.store import utcnow
    from rotator.engine.engine import DEFAULT_MAX_ATTEMPTS
    from rotator.engine.lock import PolicyLocks
    from rotator.engine.standing import standing

    config = load(config_path)
    store = open_store(config)
    store.require_current_schema()
    now = utcnow()
    locks = PolicyLocks(store.engine)
    try:
        rows = [
            standing(store, locks, policy, now, max_attempts=DEFAULT_MAX_ATTEMPTS)
            for policy in config.policies.values()
        ]
    finally:
        store.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(status_json(row, now)))
    elif sys.stdout.isatty():
        _table(rows, now, f"rotator status ({config.source})")
    else:
        click.echo("\t".join(_COLUMNS))
        for row in rows:
            cells = _human(row, now)
            click.echo("\t".join(" ".join(cells[c].split()) for c in _COLUMNS))


def status_json(row: Standing, now: datetime) -> dict[str, Any]:
    """Machine values: seconds, ISO 8601 UTC, null for unknown, nothing abbreviated."""

    def time(value: datetime | None) -> str | None:
        return format_time(value) if value else None

    return {
        "policy": row.policy,
        "provider": row.provider,
        "strategy": row.strategy,
        "current_key_id": row.current_key_id,
        "key_since": time(row.key_since),
        "key_age_seconds": int((now - row.key_since).total_seconds()) if row.key_since else None,
        "last_rotated_at": time(row.last_rotated_at),
        "last_outcome": row.last_outcome,
        "next_due": time(row.next_due),
        "due_now": row.next_due is None or row.next_due <= now,
        "in_flight": row.in_flight,
        "rotation_id": row.rotation_id,
        "grace_until": time(row.grace_until),
        "new_key_first_used_at": time(row.new_key_first_used_at),
        "needs_attention": row.needs_attention,
        "attention": row.attention,
        "attention_since": time(row.attention_since),
        "retry_at": time(row.retry_at),
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "lock_held": row.lock_held,
        "paused": row.paused,
        "blocked_by": row.blockers,
        "last_error": row.last_error,
    }


def _human(row: Standing, now: datetime) -> dict[str, str]:
    in_flight = row.in_flight or "-"
    if row.in_flight == State.GRACE and row.grace_until:
        in_flight = f"grace until {format_time(row.grace_until)}"
        if row.new_key_first_used_at:
            in_flight += f"; new key first used at {format_time(row.new_key_first_used_at)}"
    return {
        "policy": row.policy,
        "provider": row.provider,
        "strategy": row.strategy,
        "current_key": row.current_key_id or "-",
        "key_age": format_duration(now - row.key_since) if row.key_since else "-",
        "last_rotated": format_time(row.last_rotated_at) if row.last_rotated_at else "never",
        "last_outcome": row.last_outcome or "-",
        "next_due": _next_due(row),
        "in_flight": in_flight,
        "blocked_by": "; ".join(row.blockers) or "-",
        "last_error": row.last_error or "-",
    }


#: The table's columns on a terminal; reasons and errors follow the table in full.
_TABLE_COLUMNS = (
    "policy",
    "provider",
    "current_key",
    "key_age",
    "last_rotated",
    "next_due",
    "in_flight",
)


def _next_due(row: Standing) -> str:
    if row.retry_at:
        return f"retry at {format_time(row.retry_at)}"
    return format_time(row.next_due) if row.next_due else "now (never rotated)"


def _table(rows: list[Standing], now: datetime, title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    longest = max((len(row.policy) for row in rows), default=6)
    for column in _TABLE_COLUMNS:
        if column == "policy":
            table.add_column(column, no_wrap=True, min_width=longest)
        else:
            table.add_column(column.replace("_", " "), overflow="fold")
    notes: list[str] = []
    for row in rows:
        cells = _human(row, now)
        table.add_row(
            *(escape(cells[c]) for c in _TABLE_COLUMNS), style="red" if row.blockers else None
        )
        notes += [f"[red]{escape(row.policy)}: {escape(blocker)}[/red]" for blocker in row.blockers]
        if row.last_error and not row.blockers:
            notes.append(f"{escape(row.policy)}: last error: {escape(row.last_error)}")
    console = Console()
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)
