"""Audit queries over 1,000,000 events in PostgreSQL: one policy's history, and verify.

Goals: one policy's history under 50 ms; `audit verify` over the whole chain under 60 s.
Events are bulk-loaded with COPY, sealed (seq, prev_hash, hash) exactly as rotator seals them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from common import postgres_server, write_result

from rotator.audit import migrations
from rotator.audit.store import AuditStore, event_hash
from rotator.secret import Secret

EVENTS = 1_000_000
POLICIES = 1000
STEPS = ("plan", "mint", "mint", "store", "store", "verify", "grace", "revoke", "finish")


def load(store: AuditStore) -> float:
    started = time.perf_counter()
    raw = store.engine.raw_connection()
    cursor = raw.cursor()
    prev = ""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    columns = "(seq, at, policy, rotation_id, step, outcome, actor, details, prev_hash, hash)"
    with cursor.copy(f"COPY audit_events {columns} FROM STDIN") as copy:
        for n in range(EVENTS):
            values = {
                "at": base + timedelta(seconds=n),
                "policy": f"policy-{n % POLICIES}",
                "rotation_id": f"{n // len(STEPS):032x}",
                "step": STEPS[n % len(STEPS)],
                "outcome": "succeeded",
                "actor": "bench:1",
                "details": {"key_id": f"key-{n}", "vault_version": n // 9},
            }
            digest = event_hash(prev, values)
            copy.write_row(
                (
                    n + 1,
                    values["at"],
                    values["policy"],
                    values["rotation_id"],
                    values["step"],
                    values["outcome"],
                    values["actor"],
                    json.dumps(values["details"]),
                    prev,
                    digest,
                )
            )
            prev = digest
    cursor.execute(
        "UPDATE audit_chain_head SET last_hash = %s, last_seq = %s WHERE id = 1", (prev, EVENTS)
    )
    raw.commit()
    # A table that has been live for a while has been vacuumed by autovacuum: hint bits set,
    # visibility map current. A table just filled by COPY has neither, and its first reader
    # would pay for setting them, which is not what reading an audit history costs.
    raw.driver_connection.autocommit = True
    cursor.execute("VACUUM (ANALYZE) audit_events")
    raw.driver_connection.autocommit = False
    raw.close()
    return time.perf_counter() - started


def main() -> None:
    with postgres_server() as pg:
        pg.create_database("bench")
        store = AuditStore.open(Secret(pg.url("bench")))
        migrations.upgrade(store.engine)
        load_s = load(store)
        history = []
        for n in range(20):
            started = time.perf_counter()
            events = store.events(policy=f"policy-{n * 37 % POLICIES}")
            history.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = store.verify_chain()
        verify_s = time.perf_counter() - started
        store.dispose()
    figures = {
        "events": EVENTS,
        "load_s": round(load_s, 1),
        "one_policy_history_events": len(events),
        "one_policy_history_median_ms": round(sorted(history)[len(history) // 2] * 1000, 1),
        "verify_s": round(verify_s, 1),
        "verify_intact": report.intact,
        "goals": {"history_ms": 50, "verify_s": 60},
    }
    figures["goals_met"] = (
        figures["one_policy_history_median_ms"] < 50 and verify_s < 60 and report.intact
    )
    path = write_result("audit_queries", figures)
    for key, value in figures.items():
        print(f"{key:<32}{value}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
