"""rotator's CPU per Vault call: a rotation's four calls through ``VaultStore``, 1 and 32 threads.

Each thread repeats what a rotation asks of Vault (``require_writable``: capabilities-self;
``newest``: the data read; the check-and-set write; the metadata patch) on its own secret in
the OpenBao dev server. The figure is this process's CPU (user + sys, all threads) over the
calls made, the median of ``BENCH_VAULT_ROUNDS`` rounds; OpenBao's own CPU is not in it.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import openbao_server, write_result

from rotator.config.model import TokenAuth, VaultConfig
from rotator.secret import Secret
from rotator.vault import VaultStore

ROUNDS = int(os.environ.get("BENCH_VAULT_ROUNDS", "5"))
ROTATIONS = int(os.environ.get("BENCH_VAULT_ROTATIONS", "256"))
CALLS_PER_ROTATION = 4


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rotation(store: VaultStore, path: str, n: int) -> None:
    store.require_writable(path)
    version, data = store.newest(path)
    store.write_field(path, "api_key", Secret(f"bench-value-{n:08d}"), cas=version, keep=data)
    store.update_metadata(path, {"rotator.api_key.key_id": str(n)})


def one_round(store: VaultStore, threads: int, label: str) -> tuple[float, float]:
    """(CPU ms per call, calls per second) for ROTATIONS rotations spread over ``threads``."""
    each = ROTATIONS // threads
    paths = [f"bench-vault/{label}/p{i}" for i in range(threads)]

    def work(i: int) -> None:
        for n in range(each):
            rotation(store, paths[i], n)

    with ThreadPoolExecutor(threads) as pool:  # every thread's connection open before timing
        list(pool.map(lambda i: rotation(store, paths[i] + "-warm", 0), range(threads)))
    cpu, started = _cpu(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    calls = each * threads * CALLS_PER_ROTATION
    return (_cpu() - cpu) * 1000 / calls, calls / (time.perf_counter() - started)


def main() -> None:
    figures: dict[str, dict[str, float]] = {}
    with openbao_server() as bao:
        store = VaultStore(
            VaultConfig(address=bao.address, auth=TokenAuth()), Secret(bao.root_token)
        )
        store.login()
        for threads in (1, 32):
            rounds = [one_round(store, threads, f"t{threads}r{r}") for r in range(ROUNDS)]
            figures[f"threads_{threads}"] = {
                "cpu_ms_per_call": round(statistics.median(r[0] for r in rounds), 3),
                "calls_per_s": round(statistics.median(r[1] for r in rounds)),
            }
    print(f"{'threads':>8}  {'CPU ms/call':>11}  {'calls/s':>8}")
    for name, row in figures.items():
        threads = name.removeprefix("threads_")
        print(f"{threads:>8}  {row['cpu_ms_per_call']:>11}  {row['calls_per_s']:>8}")
    print("->", write_result("vault_calls", {"rotations_per_round": ROTATIONS, **figures}))


if __name__ == "__main__":
    main()
