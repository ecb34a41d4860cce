"""Shared by the benchmark scripts: real servers, result files, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

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
    *args: str, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )
