"""The ``Secret`` type: the only way rotator holds a credential or key value.

A ``Secret`` never shows its value through ``repr``, ``str``, ``format`` or
pickling; code that needs the value calls ``reveal()`` at the last moment (an
HTTP header, a Vault write). Every live ``Secret`` is tracked weakly so that
``scrub`` can also redact a value that reached text by some other road (an
exception text from a library, say), in the shapes libraries turn it into:
percent-encoded, JSON-escaped, base64 at any byte offset (HTTP Basic auth),
and, for a URL, as httpx normalises it.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, quote_plus

REDACTED = "**********"
# Shorter values are redacted only where they stand as a whole word: anywhere would
# redact pieces of ordinary words in log lines.
MIN_SCRUBBED_LENGTH = 8
# A base64 fragment this short could match by chance; keep what is left of the value.
_MIN_BASE64_FRAGMENT = 8

_live: weakref.WeakSet[Secret] = weakref.WeakSet()
# The live values, and what ``scrub`` looks for, are needed on every scrub (each audit
# detail, each log line) and change far less often: they are kept until a secret is made
# or reloaded. A value kept after its secret died is still redacted until then, never the
# reverse.
_values_lock = threading.Lock()
_values_stamp = 0


@dataclass(frozen=True)
class _Redactions:
    stamp: int
    values: list[str]
    #: Every shape of each value of ``MIN_SCRUBBED_LENGTH`` or more, values longest first.
    shapes: tuple[str, ...]
    #: Shorter values, redacted where they stand as a whole word.
    words: tuple[re.Pattern[str], ...]


_redactions = _Redactions(-1, [], (), ())


def _values_changed() -> None:
    global _values_stamp
    with _values_lock:
        _values_stamp += 1


class Secret:
    """A secret string whose value is shown only by ``reveal()``."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value
        _live.add(self)
        _values_changed()

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
            _values_changed()
            return True


def live_secret_values() -> list[str]:
    """Values of all secrets alive in this process, longest first, for scrubbing text."""
    return _current_redactions().values


def _current_redactions() -> _Redactions:
    global _redactions
    kept = _redactions
    if kept.stamp == _values_stamp:
        return kept
    with _values_lock:
        stamp = _values_stamp
    # Made after reading the stamp: a secret added meanwhile changes it, so it is never missed.
    found = {s._value for s in list(_live) if s._value}
    values = sorted(found, key=len, reverse=True)
    long = [value for value in values if len(value) >= MIN_SCRUBBED_LENGTH]
    short = [value for value in values if len(value) < MIN_SCRUBBED_LENGTH]
    kept = _Redactions(
        stamp,
        values,
        tuple(shape for value in long for shape in _shapes(value)),
        tuple(_word(value) for value in short),
    )
    _redactions = kept
    return kept


def scrub(text: str) -> str:
    """Replace every live secret value, in any of its shapes, inside ``text`` with the marker."""
    redactions = _current_redactions()
    for shape in redactions.shapes:
        if shape in text:
            text = text.replace(shape, REDACTED)
    for word in redactions.words:
        text = word.sub(REDACTED, text)
    return text


@functools.lru_cache(maxsize=1024)
def _word(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(value)}(?![\w])")


@functools.lru_cache(maxsize=1024)
def _shapes(value: str) -> tuple[str, ...]:
    """``value`` and the forms libraries turn it into, longest first."""
    shapes = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        *_base64_shapes(value.encode()),
        *_url_shapes(value),
    }
    return tuple(sorted((s for s in shapes if s), key=len, reverse=True))


def _base64_shapes(raw: bytes) -> list[str]:
    """The part of ``raw``'s base64 that is the same wherever ``raw`` starts in the input.

    base64 encodes 3 bytes as 4 characters, so ``raw`` inside a longer input
    (``user:secret`` in Basic auth) encodes one of three ways; the characters
    that also depend on the neighbouring bytes are dropped.
    """
    shapes = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode().rstrip("=")
        head = (0, 2, 3)[offset]
        tail = (offset + len(raw)) % 3
        core = encoded[head : len(encoded) - (1 if tail else 0)]
        if len(core) >= _MIN_BASE64_FRAGMENT:
            shapes += [core, core.replace("+", "-").replace("/", "_")]
    return shapes


def _url_shapes(value: str) -> list[str]:
    """A URL as httpx sends and prints it (host lower-cased, default port dropped, escaped)."""
    if not value.lower().startswith(("http://", "https://")):
        return []
    import httpx

    try:
        normalised = str(httpx.URL(value))
    except (httpx.InvalidURL, ValueError):
        return []
    return [normalised, normalised.split("://", 1)[1]]
