"""Printing engine outcomes: a line per policy for people, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
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
    Result.PAUSED: "yellow",
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


def run_each(
    names: list[str], work: Callable[[str], Outcome], *, as_json: bool, concurrency: int
) -> list[Outcome]:
    """Run ``work`` for each policy, ``concurrency`` at a time, printing outcomes as they come.

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
        for future in as_completed([pool.submit(work, name) for name in names]):
            outcome = future.result()
            outcomes.append(outcome)
            print_outcome(outcome, as_json=as_json)
            if progress is not None:
                progress.advance(task)
    return outcomes
