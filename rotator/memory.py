"""Handing the memory a configuration load freed back to the operating system.

Checking a ``rotator.yaml`` of thousands of policies builds temporaries (the YAML
data and its line table, pydantic's raw models) several times the size of the
policies kept. The daemon holds the result for days, so once the temporaries are
garbage it collects them at once and, on glibc, asks malloc to return the free
pages it would otherwise keep for the process's lifetime.
"""

from __future__ import annotations

import gc


def release_freed_memory() -> None:
    """Collect garbage now and return free heap pages to the OS where the C library can."""
    gc.collect()
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # no process-wide symbol table (Windows)
        return
    # glibc only: musl and macOS have no malloc_trim, and there is nothing to return.
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
