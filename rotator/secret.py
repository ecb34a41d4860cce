"""The ``Secret`` type: the only way rotator holds a credential or key value.

A ``Secret`` never shows its value through ``repr``, ``str``, ``format`` or
pickling; code that needs the value calls ``reveal()`` at the last moment (an
HTTP header, a Vault write). Every live ``Secret`` is tracked weakly so that
the log redactor can also scrub a value that reached a log line by some other
road (an exception text from a library, say).
"""

from __future__ import annotations

import hmac
import threading
import weakref
from pathlib import Path
from typing import NoReturn

REDACTED = "**********"
# Shorter values would redact ordinary words in log lines; no vendor issues keys this short.
MIN_SCRUBBED_LENGTH = 8

_live: weakref.WeakSet[Secret] = weakref.WeakSet()


class Secret:
    """A secret string whose value is shown only by ``reveal()``."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value
        _live.add(self)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


class FileSecret(Secret):
    """A secret kept in a file that something else rewrites (Vault Agent's token sink, a
    mounted Kubernetes Secret): ``reveal()`` reads the file again when its inode, size or
    modification time changed, and ``reload()`` re-reads it regardless (after a 401/403,
    since a rewrite can keep all three). An unreadable or emptied file keeps the last value.
    """

    __slots__ = ("_lock", "_path", "_stamp")

    def __init__(self, path: Path, value: str) -> None:
        super().__init__(value)
        self._path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()

    @property
    def path(self) -> Path:
        return self._path

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def reveal(self) -> str:
        if self._stat() != self._stamp:
            self.reload()
        return self._value

    def reload(self) -> bool:
        """Read the file now; whether the value changed."""
        with self._lock:
            stamp = self._stat()
            try:
                value = self._path.read_text(encoding="utf-8").strip()
            except OSError:
                return False
            self._stamp = stamp
            if not value or value == self._value:
                return False
            self._value = value
            return True


def live_secret_values() -> list[str]:
    """Values of all secrets alive in this process, longest first, for scrubbing text."""
    values = {s.reveal() for s in list(_live) if len(s.reveal()) >= MIN_SCRUBBED_LENGTH}
    return sorted(values, key=len, reverse=True)


def scrub(text: str) -> str:
    """Replace every live secret value inside ``text`` with the redaction marker."""
    for value in live_secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text
