"""Never two rotations of one policy at once, whoever starts them (PostgreSQL or SQLite lock)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.forkserver import wait_for_exits
from tests.support.rig import Rig, migrate, vendor_strategies

RigFactory = Callable[[str], Rig]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@pytest.mark.parametrize(("vendor", "strategy"), vendor_strategies(), ids=lambda v: str(v))
def test_three_simultaneous_rotate_now_make_exactly_one_rotation(
    rig_factory: RigFactory, tmp_path: Path, backend: str, vendor: str, strategy: str
) -> None:
    rig = rig_factory(vendor)
    if backend == "sqlite":
        rig.database_url = f"sqlite:///{tmp_path / 'race.db'}"
        migrate(rig.database_url)
    rig.add_policy("app", strategy=strategy, grace="0s")
    method, path = rig.emulator.operations["regenerate" if strategy == "regenerate" else "create"]
    hold = rig.server.hold(method, path, after=False, resume=True)

    processes = [rig.spawn("rotate", "now", "app", "--json") for _ in range(3)]
    hold.wait_arrived()
    wait_for_exits(processes, 2, timeout=60)
    hold.release()
    results = [json.loads(p.communicate(timeout=60)[0])["result"] for p in processes]

    assert sorted(results) == ["completed", "locked", "locked"]
    assert rig.server.calls(method, path) == 1
    store = rig.store()
    assert len(store.rotations_for("app")) == 1
    store.dispose()
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
