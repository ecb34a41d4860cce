"""Printing engine outcomes: a line per policy for people, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import fields
from datetime import datetime
from typing import Any

import click

from rotator.cli.options import verbosity
from rotator.errors import RotatorError
from rotator.timestamps import format_time
from rotator.vocabulary import Outcome, Result

_COLOURS = {
    Result.COMPLETED: "green",
    Result.WAITING: "cyan",
    Result.GRACE_EXTENDED: "yellow",
    Result.DRY_RUN: "cyan",
    Result.NOT_DUE: None,
    Result.LOCKED: "yellow",
    Result.LOST_LOCK: "yellow",
    Result.PAUSED: "yellow",
    Result.FAILED: "red",
    Result.ROLLED_BACK: "red",
    Result.NEEDS_ATTENTION: "red",
    Result.IN_GRACE: "yellow",
    Result.RETRY_PENDING: "yellow",
    Result.ADOPTED: "green",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    # Read field by field: ``asdict`` deep-copies every value first, a noticeable share of
    # the CPU of ``rotate now --all --json`` over many policies.
    return {field.name: _jsonable(getattr(outcome, field.name)) for field in fields(outcome)}


def print_outcomes(outcomes: Iterable[Outcome], *, as_json: bool) -> None:
    for outcome in outcomes:
        print_outcome(outcome, as_json=as_json)


def print_outcome(outcome: Outcome, *, as_json: bool) -> None:
    """One outcome; with ``-q`` only failures (and policies another process held) are printed."""
    if verbosity().quiet and not (outcome.result.is_failure or outcome.result is Result.LOCKED):
        return
    if as_json:
        click.echo(json.dumps(outcome_json(outcome)))
        return
    label = click.style(f"{outcome.result.value:<15}", fg=_COLOURS.get(outcome.result), bold=True)
    click.echo(f"{outcome.policy:<24} {label} {outcome.message}")
    for call in outcome.calls:
        click.echo(f"{'':<24}   - {call}")


def run_each(
    names: list[str], work: Callable[[str], Outcome], *, as_json: bool, concurrency: int
) -> list[Outcome]:
    """Run ``work`` for each policy, ``concurrency`` at a time; print outcomes in ``names`` order.

    On a terminal (and without ``--json``) a progress bar shows how far the run is.
    """
    show_progress = sys.stdout.isatty() and not as_json and len(names) > 1
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        progress = None
        if show_progress:
            from rich.progress import Progress

            progress = stack.enter_context(Progress(transient=True))
            task = progress.add_task("rotating", total=len(names))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, concurrency)))
        futures = [(name, pool.submit(work, name)) for name in names]
        for name, future in futures:
            try:
                outcome = future.result()
            except RotatorError as exc:
                # One policy's failure is its own result line; the others still get theirs.
                outcome = Outcome(name, Result.FAILED, str(exc))
            outcomes.append(outcome)
            print_outcome(outcome, as_json=as_json)
            if progress is not None:
                progress.advance(task)
    return outcomes
