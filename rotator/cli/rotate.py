"""``rotator rotate now`` and ``rotator rotate due``."""

from __future__ import annotations

import sys

import click

from rotator.cli.options import (
    complete_policies,
    config_option,
    load,
    read_config,
    setup_logging,
    start_up,
)
from rotator.cli.output import print_outcome, print_outcomes, run_each


@click.group()
def rotate() -> None:
    """Rotate keys now, or whatever is due."""


@rotate.command()
@config_option
@click.argument("policies", nargs=-1, shell_complete=complete_policies)
@click.option("--all", "all_policies", is_flag=True, help="Every policy in the configuration.")
@click.option("--dry-run", is_flag=True, help="Print the calls that would be made; make none.")
@click.option(
    "--emergency",
    is_flag=True,
    help="A key leaked: revoke the old key at once, with no grace period.",
)
@click.option(
    "--force", is_flag=True, help="Rotate even a paused policy (or one with enabled: false)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
@click.option(
    "--concurrency", type=click.IntRange(1, 256), help="Policies at once (default: daemon's)."
)
def now(
    config_path: str | None,
    policies: tuple[str, ...],
    all_policies: bool,
    dry_run: bool,
    emergency: bool,
    force: bool,
    as_json: bool,
    concurrency: int | None,
) -> None:
    """Rotate POLICIES (or --all) regardless of schedule.

    A rotation still in grace is not replaced (result in_grace: its new key is
    already in Vault); --emergency revokes its old key and makes a fresh one.
    A paused policy is left alone unless --force is given. Results come in the
    order of the configuration file. Exit 1 if any rotation failed, another
    process held a policy's lock, or a policy named on the command line is paused.
    """
    if bool(policies) == all_policies:
        raise click.UsageError("name one or more policies, or pass --all (not both)")
    with start_up():
        from rotator.engine.engine import Engine
        from rotator.errors import ConfigError
        from rotator.vocabulary import Result

        config = load(config_path)
        names = list(config.policies) if all_policies else list(policies)
        for name in names:
            if name not in config.policies:
                known = ", ".join(sorted(config.policies)) or "none"
                raise ConfigError(f"no policy named {name!r} in {config.source} (known: {known})")
        workers = concurrency or config.daemon.concurrency
        engine = Engine.open(config, workers=workers)
    try:
        outcomes = run_each(
            names,
            (lambda name: engine.describe(name, emergency=emergency, force=force))
            if dry_run
            else (lambda name: engine.rotate_now(name, emergency=emergency, force=force)),
            as_json=as_json,
            concurrency=workers,
        )
    finally:
        engine.close()
    # --all skips held policies quietly; a policy asked for by name and not rotated is an error.
    refused = {Result.LOCKED} if all_policies else {Result.LOCKED, Result.PAUSED}
    failed = any(o.result.is_failure or o.result in refused for o in outcomes)
    sys.exit(1 if failed else 0)


@rotate.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy.")
@click.option(
    "--concurrency", type=click.IntRange(1, 256), help="Policies at once (default: daemon's)."
)
def due(config_path: str | None, as_json: bool, concurrency: int | None) -> None:
    """Rotate every due policy and advance rotations waiting in grace, then exit.

    For a Kubernetes CronJob: exit 1 only when an attempt made by this run failed
    or a policy became needs_attention in this run; a policy waiting for its retry
    time (retry_pending) or flagged by an earlier run is reported, exit 0.
    Results come in the order of the configuration file.
    """
    # Most CronJob runs find nothing due: that answer is given before logging or the
    # engine (SQLAlchemy, hvac, httpx) is imported.
    with start_up():
        from rotator.engine.idle import idle_outcomes

        config = read_config(config_path)
        idle = idle_outcomes(config)
    if idle is not None:
        print_outcomes(idle, as_json=as_json)
        sys.exit(0)
    with start_up():
        from rotator.engine.engine import Engine

        setup_logging()
        workers = concurrency or config.daemon.concurrency
        engine = Engine.open(config, workers=workers)
    try:
        outcomes = run_each(
            list(config.policies), engine.rotate_if_due, as_json=as_json, concurrency=workers
        )
    finally:
        engine.close()
    sys.exit(1 if any(o.attempted and o.result.is_failure for o in outcomes) else 0)


@click.command()
@config_option
@click.argument("policy", shell_complete=complete_policies)
@click.option("--key-id", help="The vendor id of the key in Vault (default: as far as known).")
def adopt(config_path: str | None, policy: str, key_id: str | None) -> None:
    """Record the key already in Vault as current, without rotating.

    Rotation then starts on the schedule instead of at once.
    """
    with start_up():
        from rotator.engine.engine import Engine

        engine = Engine.open(load(config_path))
    try:
        outcome = engine.adopt(policy, key_id)
    finally:
        engine.close()
    print_outcome(outcome, as_json=False)
    sys.exit(1 if outcome.result.is_failure or outcome.result.value == "locked" else 0)
