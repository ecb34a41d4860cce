"""Shared by the benchmark scripts: real servers, result files, the machine's description.

Importing it compiles rotator's modules to bytecode, as ``pip install`` does for an installed
package (and a container image holds): with PYTHONDONTWRITEBYTECODE set, each rotator
subprocess a benchmark starts would otherwise compile every module from source.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
compileall.compile_dir(ROOT / "rotator", quiet=1)

from tests.support.servers import (  # noqa: E402
    OpenBaoServer,
    PostgresServer,
    free_port,
    openbao_server,
    postgres_server,
)

__all__ = [
    "OpenBaoServer",
    "PostgresServer",
    "cpu_seconds",
    "free_port",
    "machine",
    "openbao_server",
    "postgres_server",
    "rotator",
    "write_result",
]


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, figures: dict[str, Any], notes: str = "") -> Path:
    """Write bench/results/NAME.json; the figures it held before are kept as ``previous``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result: dict[str, Any] = {"machine": machine(), **figures}
    if notes:
        result["notes"] = notes
    if path.exists():
        old = json.loads(path.read_text())
        result["previous"] = {k: v for k, v in old.items() if k not in ("previous", "notes")}
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def rotator(
    *args: str, env: dict[str, str], timeout: float = 900, wrapper: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the rotator CLI; ``wrapper`` goes before it (a profiler's command line)."""
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )


def _process_times(pid: int) -> tuple[int, float, float]:
    """(parent pid, own CPU seconds, CPU seconds of its children it has reaped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    reaped = (int(fields[13]) + int(fields[14])) / tick
    return int(fields[1]), own, reaped


def _server_cpu(marker: str) -> float:
    """CPU seconds used so far by the server whose command line holds ``marker``.

    Counts the server, its live children and the children it already reaped
    (PostgreSQL's backends exit when their connection closes).
    """
    table: dict[int, tuple[int, float, float]] = {}
    roots: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = _process_times(int(entry.name))
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                roots.append(int(entry.name))
        except OSError:
            continue
    total = 0.0
    for root in roots:
        total += table[root][1] + table[root][2]
        total += sum(own for ppid, own, _ in table.values() if ppid == root)
    return total


def cpu_seconds(pg: PostgresServer, bao: OpenBaoServer) -> dict[str, float]:
    """CPU seconds used so far, by component: rotator subprocesses (already finished), the
    emulators (this process), PostgreSQL and OpenBao."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    this = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rotator": children.ru_utime + children.ru_stime,
        "emulators": this.ru_utime + this.ru_stime,
        "postgresql": _server_cpu(f"-p {pg.port} "),
        "openbao": _server_cpu(f"-dev-listen-address={bao.address.removeprefix('http://')}"),
    }
