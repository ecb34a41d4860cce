"""Printing engine outcomes: a line per policy for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from rotator.engine.states import Outcome, Result

_COLOURS = {
    Result.COMPLETED: "green",
    Result.WAITING: "cyan",
    Result.DRY_RUN: "cyan",
    Result.NOT_DUE: None,
    Result.LOCKED: "yellow",
    Result.FAILED: "red",
    Result.ROLLED_BACK: "red",
    Result.NEEDS_ATTENTION: "red",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {key: _jsonable(value) for key, value in asdict(outcome).items()}


def print_outcomes(outcomes: Iterable[Outcome], *, as_json: bool) -> None:
    for outcome in outcomes:
        print_outcome(outcome, as_json=as_json)


def print_outcome(outcome: Outcome, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(outcome_json(outcome)))
        return
    label = click.style(f"{outcome.result.value:<15}", fg=_COLOURS.get(outcome.result), bold=True)
    click.echo(f"{outcome.policy:<24} {label} {outcome.message}")
    for call in outcome.calls:
        click.echo(f"{'':<24}   - {call}")
