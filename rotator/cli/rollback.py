"""``rotator rollback``: send a rotation in grace back to its old key, saying why."""

from __future__ import annotations

import sys

import click

from rotator.cli.options import complete_policies, config_option, load
from rotator.cli.output import print_outcome


@click.command()
@config_option
@click.argument("policy", shell_complete=complete_policies)
@click.option("--reason", help="Why: recorded on the rotation, audited and notified.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a TTY).")
@click.option("--json", "as_json", is_flag=True, help="The outcome as one JSON object.")
def rollback(
    config_path: str | None, policy: str, reason: str | None, yes: bool, as_json: bool
) -> None:
    """Go back to POLICY's old key while its rotation is in grace (the old key still live).

    The old secret becomes Vault's current version again (a new version,
    check-and-set), the new key is revoked, and the rotation ends rolled_back,
    with who and why in the audit trail. Refused (exit 2, nothing changed) after
    grace, for regenerate-in-place policies, and when Vault lost the old version.
    A rollback interrupted by a crash is finished by running it again (or by the
    next 'rotate now', 'rotate due' or daemon run).
    """
    from rotator.engine.engine import Engine
    from rotator.engine.rollback import describe_rollback
    from rotator.errors import RollbackRefused
    from rotator.vocabulary import Result

    why = (reason or "").strip()[:2000] or "no reason given"
    engine = Engine.open(load(config_path))
    try:
        target = engine.rollback_target(policy)
        if not yes:
            if not sys.stdin.isatty():
                raise RollbackRefused(
                    f"rollback of {policy} needs confirmation and there is no terminal to ask "
                    "on: pass --yes"
                )
            click.echo(f"{policy}: roll back rotation {target.rotation.id}:")
            for line in describe_rollback(target.rotation):
                click.echo(f"  - {line}")
            click.confirm("Roll back?", abort=True)
        outcome = engine.roll_back(policy, reason=why)
    finally:
        engine.close()
    print_outcome(outcome, as_json=as_json)
    sys.exit(0 if outcome.result is Result.ROLLED_BACK else 1)
