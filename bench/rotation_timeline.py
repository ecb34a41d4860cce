"""Where the wall time of one rotation goes at concurrency 1: vendor, Vault, database, CPU.

rotator's Engine rotates DigitalOcean policies one after another in this process (as
`rotate now --all --concurrency 1` does, there on its one pool thread), against the
DigitalOcean emulator (every call delayed by 50 ms), PostgreSQL and OpenBao, set up as
throughput.py sets them up (create_then_delete, grace 0). Every HTTP call is timed on its
socket, whatever client sends it (vendor or Vault, by the server's port), from the first
byte of the request sent to the last byte of the answer received; every database statement
where psycopg sends it. What lies between two calls on the rotating thread is CPU: rotator's
own and its client libraries' (building requests, reading answers).

The socket and psycopg methods are wrapped here, in this measuring process only: this
script measures rotator, it does not test it. Reported, per rotation after the first two
(which import and compile what the others reuse): wall time, time in each kind of call and
how many, the gaps between calls, the rotating thread's CPU; the first rotation's wall
time; and a rotation's calls in order (the median of each over those rotations).
``BENCH_TIMELINE_POLICIES`` (default 22) sets how many policies are rotated. The bare
like-for-like script of throughput.py (the same vendor and Vault calls, nothing else) runs
on the same servers for comparison. The process start of `rotate now` (imports,
configuration, ``Engine.open``) is not in here: throughput.py's figures include it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import OpenBaoServer, openbao_server, postgres_server, write_result
from throughput import DELAY, TOKEN, emulator, like_for_like_baseline

from rotator.sandbox.server import EmulatorServer

POLICIES = int(os.environ.get("BENCH_TIMELINE_POLICIES", "22"))
WARM_UP = 2
KINDS = ("vendor", "vault", "db")


@dataclass(frozen=True)
class Call:
    thread: int
    kind: str
    label: str
    start: float
    end: float


CALLS: list[Call] = []
#: The HTTP servers' ports, and what kind of call goes to each.
PORTS: dict[int, str] = {}
_inside = threading.local()


def _timed(owner: type, name: str, label: Callable[..., str]) -> None:
    """Time ``owner.name`` (a database statement) into CALLS; one made inside one is not
    counted again."""
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "call", False):
            return original(*args, **kwargs)
        _finish_http()
        _inside.call = True
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            end = time.perf_counter()
            _inside.call = False
            CALLS.append(Call(threading.get_ident(), "db", label(*args, **kwargs), start, end))

    setattr(owner, name, timed)


# An HTTP call is timed on its socket, whatever client sends it: from the first byte of the
# request sent to the last byte of the answer received (the thread's next call, or
# statement, ends it). Each thread makes one call at a time.
def _finish_http() -> None:
    call = getattr(_inside, "http", None)
    if call is not None:
        _inside.http = None
        CALLS.append(Call(threading.get_ident(), *call[:4]))


def _sending(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(sock: socket.socket, data: Any, *args: Any) -> Any:
        call = getattr(_inside, "http", None)
        if call is None or call[4] is not sock or call[5]:
            start = time.perf_counter()
            _finish_http()
            kind = PORTS.get(sock.getpeername()[1]) if sock.family == socket.AF_INET else None
            if kind is not None:
                line = bytes(data[:300]).split(b"\r\n", 1)[0].decode(errors="replace")
                method, _, target = line.partition(" ")
                label = f"{method} {_path(target.rsplit(' ', 1)[0])}"
                # kind, label, start, end, socket, answer begun
                _inside.http = [kind, label, start, start, sock, False]
        return original(sock, data, *args)

    return send


def _receiving(original: Callable[..., Any]) -> Callable[..., Any]:
    def receive(sock: socket.socket, *args: Any) -> Any:
        got = original(sock, *args)
        call = getattr(_inside, "http", None)
        # A poll or a peek for a stale connection reads nothing and ends no call.
        if call is not None and call[4] is sock and got:
            call[3], call[5] = time.perf_counter(), True
        return got

    return receive


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|(?<=/)p\d+\b")


def _path(path: str) -> str:
    return _ID.sub("{id}", path.split("?")[0])


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


def _sql(_cursor: Any, query: Any, *_: Any, **__: Any) -> str:
    text = query.decode() if isinstance(query, bytes) else str(query)
    return " ".join(text.split())[:70]


def instrument() -> None:
    for name in ("send", "sendall"):
        setattr(socket.socket, name, _sending(getattr(socket.socket, name)))
    for name in ("recv", "recv_into"):
        setattr(socket.socket, name, _receiving(getattr(socket.socket, name)))
    _timed(psycopg.Cursor, "execute", _sql)
    _timed(psycopg.Cursor, "executemany", _sql)
    _timed(psycopg.Connection, "commit", lambda _c: "COMMIT")


@dataclass(frozen=True)
class Rotation:
    policy: str
    result: str
    start: float
    end: float
    cpu: float
    calls: list[Call]

    @property
    def wall(self) -> float:
        return self.end - self.start

    def spent(self, kind: str) -> float:
        return sum(c.end - c.start for c in self.calls if c.kind == kind)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c.kind == kind)

    @property
    def gaps(self) -> float:
        return self.wall - sum(self.spent(kind) for kind in KINDS)


def _config(database_url: str, bao: OpenBaoServer, server: EmulatorServer) -> str:
    """rotator's configuration: one DigitalOcean policy per seeded key, each in Vault."""
    lines = [
        f'database: {{url: "{database_url}"}}',
        f'vault: {{address: "{bao.address}", auth: {{method: token}}}}',
        "providers:",
        f'  do: {{type: digitalocean_gradient, token: "${{T}}", base_url: "{server.vendor_url}", '
        "rate_limit: null}",
        "policies:",
    ]
    with httpx.Client(headers={"X-Vault-Token": bao.root_token}) as vault:
        for n in range(POLICIES):
            slot = server.emulator.seed_slot()
            path = f"timeline/p{n:03d}"
            vault.post(
                f"{bao.address}/v1/secret/data/{path}", json={"data": {"api_key": slot.secret}}
            ).raise_for_status()
            lines.append(
                f"  p{n:03d}: {{provider: do, key: {json.dumps(slot.selector)}, strategy: "
                f"create_then_delete, schedule: {{every: 30d}}, grace_period: 0s, "
                f"vault: {{path: {path}}}}}"
            )
    return "\n".join(lines) + "\n"


def rotate_all(tmp: Path) -> tuple[list[Rotation], dict[str, float]]:
    from rotator.config.loader import load_config
    from rotator.engine.engine import Engine
    from rotator.log import configure_logging
    from rotator.providers.registry import provider_class

    with postgres_server() as pg, openbao_server() as bao:
        server = EmulatorServer(emulator("digitalocean_gradient"), delay=DELAY).start()
        PORTS.update({_port(server.vendor_url): "vendor", _port(bao.address): "vault"})
        config_path = tmp / "rotator.yaml"
        config_path.write_text(_config(pg.create_database("timeline"), bao, server))
        os.environ.update(VAULT_TOKEN=bao.root_token, T=TOKEN)
        subprocess.run(
            [sys.executable, "-m", "rotator", "db", "upgrade", "--config", str(config_path)],
            check=True,
            capture_output=True,
        )
        with open(os.devnull, "w") as quiet:
            configure_logging(level="warning", json=True, stream=quiet)
            config = load_config(config_path, provider_class)
            engine = Engine.open(config, workers=1)
            rotations = []
            try:
                for name in config.policies:
                    CALLS.clear()
                    start, cpu = time.perf_counter(), time.thread_time()
                    outcome = engine.rotate_now(name)
                    _finish_http()
                    end, cpu = time.perf_counter(), time.thread_time() - cpu
                    mine = [c for c in CALLS if c.thread == threading.get_ident()]
                    rotations.append(Rotation(name, outcome.result.value, start, end, cpu, mine))
            finally:
                engine.close()
        like = like_for_like_baseline(bao, POLICIES)
        server.stop()
    return rotations, like


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timeline(steady: list[Rotation]) -> list[dict[str, Any]]:
    """The calls of a rotation in order, each with the median over ``steady`` (which all make
    the same calls) of when it starts, the gap before it and how long it takes."""
    shapes = {tuple((c.kind, c.label) for c in r.calls) for r in steady}
    if len(shapes) != 1:
        raise SystemExit(f"the rotations made different calls: {sorted(shapes)}")
    rows = []
    for n, (kind, label) in enumerate(shapes.pop()):
        at, gap, took = [], [], []
        for r in steady:
            call = r.calls[n]
            at.append(call.start - r.start)
            gap.append(call.start - (r.calls[n - 1].end if n else r.start))
            took.append(call.end - call.start)
        rows.append({"at_ms": at, "gap_before_ms": gap, "kind": kind, "ms": took, "call": label})
    rows.append(
        {
            "at_ms": [r.wall for r in steady],
            "gap_before_ms": [r.end - r.calls[-1].end for r in steady],
            "kind": "",
            "ms": [0.0],
            "call": "(outcome returned)",
        }
    )
    median = ("at_ms", "gap_before_ms", "ms")
    return [
        {k: _ms(statistics.median(v)) if k in median else v for k, v in row.items()} for row in rows
    ]


def main() -> None:
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        rotations, like = rotate_all(Path(tmp))
    steady = rotations[WARM_UP:]
    assert all(r.result == "completed" for r in rotations), [r.result for r in rotations]

    def mean(value: Callable[[Rotation], float]) -> float:
        return _ms(statistics.fmean(value(r) for r in steady))

    per_rotation = {
        "wall_ms": mean(lambda r: r.wall),
        **{f"{kind}_ms": _ms(statistics.fmean(r.spent(kind) for r in steady)) for kind in KINDS},
        **{f"{kind}_calls": statistics.fmean(r.count(kind) for r in steady) for kind in KINDS},
        "gaps_ms": mean(lambda r: r.gaps),
        "thread_cpu_ms": mean(lambda r: r.cpu),
    }
    calls = timeline(steady)
    figures = {
        "policies": POLICIES,
        "vendor_delay_s": DELAY,
        "per_rotation_after_warm_up": per_rotation,
        "first_rotation_wall_ms": _ms(rotations[0].wall),
        "like_for_like_script_ms_per_rotation": round(1000 / like["rotations_per_s"], 1),
        "median_rotation": calls,
    }
    path = write_result("rotation_timeline", figures)
    print(f"a rotation's calls (median over {len(steady)} rotations after {WARM_UP} warm-up ones):")
    print(f"{'at ms':>9}{'gap':>7}  {'kind':<7}{'ms':>7}  call")
    for row in calls:
        print(
            f"{row['at_ms']:>9}{row['gap_before_ms']:>7}  {row['kind']:<7}{row['ms']:>7}  "
            f"{row['call']}"
        )
    print("\nmean per rotation:")
    for key, value in per_rotation.items():
        print(f"  {key:<16}{value:>9.2f}")
    print(f"first rotation: {figures['first_rotation_wall_ms']} ms")
    print(f"like-for-like script: {figures['like_for_like_script_ms_per_rotation']} ms a rotation")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
