"""Names that become parts of paths: policy names and Vault paths, checked before any use.

A policy's name is part of its staging path (``<staging_prefix>/<name>``)
and its vendor key names, and a Vault path is part of the URL of every KV
call. A ``..``, an empty segment or a leading ``/`` would point those calls
somewhere other than the file says (another team's secret, outside the
staging prefix), and ``?``, ``#`` or ``%`` would change the URL itself; so
each is refused where the configuration loads.
"""

from __future__ import annotations

import re

POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
POLICY_NAME_RULE = (
    "policy names are 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or "
    "a digit (a name is part of Vault and vendor paths)"
)
_UNSAFE = re.compile(r"[\s?#%\\]|[\x00-\x1f\x7f]")


def check_vault_path(path: str) -> str:
    """``path`` if it is a plain relative Vault path; ``ValueError`` saying what is wrong."""
    if path.startswith("/"):
        raise ValueError(
            f"{path!r} starts with '/'; write it relative to the mount, e.g. 'apps/web'"
        )
    segments = path.split("/")
    if "" in segments:
        raise ValueError(f"{path!r} has an empty segment ('//' or a trailing '/'); remove it")
    if "." in segments or ".." in segments:
        raise ValueError(f"{path!r} has a '.' or '..' segment; name the path itself")
    if _UNSAFE.search(path):
        raise ValueError(
            f"{path!r} holds a space, a control character or one of ? # % \\, which would change "
            "the URL of every Vault call; rename the path"
        )
    return path


def is_under(path: str, prefix: str) -> bool:
    """Whether Vault ``path`` is ``prefix`` or lies inside it."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
