"""Whatever goes wrong in a step is a failed attempt: counted, backed off, reported per policy.

A vendor answering a create with an HTML page (a proxy's maintenance page
behind a 200), or an audit database refusing writes, must neither crash the
run nor cost the other policies their result lines, nor (after a regenerate)
the only working secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from tests.support.rig import Rig, vendors_supporting

RigFactory = Callable[[str], Rig]
MAINTENANCE_PAGE = "<html><body><h1>Down for maintenance</h1></body></html>"


def mint_call(rig: Rig, strategy: str) -> tuple[str, str]:
    return rig.emulator.operations["regenerate" if strategy == "regenerate" else "create"]


def sql(database_url: str, statement: str) -> None:
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.autocommit = True
        conn.execute(statement)  # type: ignore[arg-type]


def test_a_mint_answered_with_an_html_page_is_a_counted_attempt_with_backoff(rig: Rig) -> None:
    spec = rig.add_policy("app", strategy=rig.strategy)
    method, path = mint_call(rig, rig.strategy)
    rig.server.validator = None  # the HTML page is the point, not a contract violation
    rig.server.fail(method, path, status=200, body=MAINTENANCE_PAGE)

    result = rig.run("rotate", "now", "app", "--json")
    due = rig.run("rotate", "due", "--json")

    assert result.returncode == 1
    assert json.loads(result.stdout)["result"] == "failed", result.stderr
    assert "Traceback" not in result.stderr
    assert MAINTENANCE_PAGE not in result.stdout + result.stderr
    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert rotation.attempts == 1
    assert rotation.next_attempt_at is not None
    assert "retrying at" in json.loads(due.stdout)["message"]
    assert rig.server.calls(method, path) == 1, "the backoff holds the next attempt back"
    assert rig.vault_secret("app") == spec.slot.secret
    assert rig.vendor_accepts("app", spec.slot.secret)


def test_every_policy_gets_its_result_line_when_one_fails_unexpectedly(rig: Rig) -> None:
    rig.add_policy("one", strategy=rig.strategy, grace="0s")
    rig.add_policy("two", strategy=rig.strategy, grace="0s")
    method, path = mint_call(rig, rig.strategy)
    rig.server.validator = None  # the HTML page is the point, not a contract violation
    rig.server.fail(method, path, status=200, body=MAINTENANCE_PAGE, times=1)

    result = rig.run("rotate", "now", "--all", "--json")

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["policy"] for line in lines) == ["one", "two"], result.stderr
    assert sorted(line["result"] for line in lines) == ["completed", "failed"]
    assert result.returncode == 1


@pytest.mark.parametrize("vendor", vendors_supporting("regenerate"))
def test_an_audit_database_failure_after_a_regenerate_does_not_stop_the_vault_write(
    rig_factory: RigFactory, vendor: str
) -> None:
    rig = rig_factory(vendor)
    rig.add_policy("app", strategy="regenerate", grace="0s")
    hold = rig.server.hold(*mint_call(rig, "regenerate"), after=True, resume=True)
    process = rig.spawn("rotate", "now", "app", "--json")
    hold.wait_arrived()
    sql(
        rig.database_url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'rotations are read-only now'; END $$; "
        "CREATE TRIGGER refuse BEFORE UPDATE ON rotations EXECUTE FUNCTION refuse()",
    )
    hold.release()
    stdout, stderr = process.communicate(timeout=60)

    assert json.loads(stdout)["result"] == "failed", stderr
    assert rig.vendor_accepts("app", rig.vault_secret("app")), "Vault has the regenerated secret"

    sql(rig.database_url, "DROP TRIGGER refuse ON rotations")
    again = rig.run("rotate", "now", "app", "--json")

    assert json.loads(again.stdout)["result"] == "completed", again.stderr
    assert rig.server.calls(*mint_call(rig, "regenerate")) == 1
    assert rig.vault_version("app") == 2
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
