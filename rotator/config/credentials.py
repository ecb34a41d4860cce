"""Credential references in the configuration: ``${ENV}``, ``file:/path``, ``vault:path#field``.

Credentials never sit in the YAML as literals unless the file says
``allow_literal_secrets: true``. Environment and file references are resolved
when the configuration loads (an unset variable is a configuration error);
Vault references are resolved at start, once Vault is reachable.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rotator.config.paths import check_vault_path
from rotator.secret import FileSecret, Secret

_ENV_WHOLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_ANY = re.compile(r"\$\{([^}]*)\}")
_VAULT = re.compile(r"vault:(?P<path>[^#\s]+)#(?P<field>[^#\s]+)")

#: A credential file holds one token; anything larger is a mistake (or /dev/zero).
MAX_CREDENTIAL_FILE_BYTES = 64 * 1024

REFERENCE_FORMS = "'${ENV_VAR}', 'file:/path/to/file' or 'vault:path#field'"


@dataclass(frozen=True)
class VaultReference:
    """A credential that lives in Vault KV v2 at ``path``, under ``field``."""

    path: str
    field: str

    def __str__(self) -> str:
        return f"vault:{self.path}#{self.field}"


Credential = Secret | VaultReference


@dataclass(frozen=True)
class ParsedCredential:
    credential: Credential
    warning: str | None = None


def parse_credential(
    raw: object, *, allow_literal: bool, env: Mapping[str, str] | None = None
) -> ParsedCredential:
    """Turn a configured credential into a ``Secret`` or a ``VaultReference``.

    Raises ``ValueError`` with a message that never repeats the raw value,
    since a misplaced literal may be a real secret.
    """
    env = os.environ if env is None else env
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"must be a non-empty string reference: {REFERENCE_FORMS}")
    if match := _ENV_WHOLE.fullmatch(raw):
        name = match.group(1)
        if not env.get(name):
            raise ValueError(
                f"environment variable {name} is not set (or empty); export it before running "
                "rotator, or point this credential at a file or Vault"
            )
        return ParsedCredential(Secret(env[name]))
    if raw.startswith("file:"):
        path = Path(raw[len("file:") :])
        return ParsedCredential(FileSecret(path, read_credential_file(path)), _file_warning(path))
    if raw.startswith("vault:"):
        if not (match := _VAULT.fullmatch(raw)):
            raise ValueError("a Vault reference looks like 'vault:path/to/secret#field'")
        return ParsedCredential(VaultReference(check_vault_path(match["path"]), match["field"]))
    if "${" in raw:
        raise ValueError(
            "an environment reference must be the whole value, e.g. '${TOKEN}': " + REFERENCE_FORMS
        )
    if not allow_literal:
        raise ValueError(
            "looks like a literal secret; secrets must not be written into config files. "
            f"Use {REFERENCE_FORMS}, or set 'allow_literal_secrets: true' at the top level "
            "for a local trial"
        )
    return ParsedCredential(
        Secret(raw),
        warning="holds a literal secret (allowed by allow_literal_secrets); "
        "do not commit this file",
    )


def expand_env(
    text: str, env: Mapping[str, str] | None = None, *, encode: Callable[[str], str] = str
) -> str:
    """Replace each ``${VAR}`` inside ``text`` by ``encode(value)``; ``ValueError`` if unset."""
    env = os.environ if env is None else env

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ValueError(f"environment variable {name} is not set; export it before running")
        return encode(env[name])

    return _ENV_ANY.sub(substitute, text)


def read_credential_file(path: Path) -> str:
    """The stripped text of a credential file; ``ValueError`` if it is not a small regular file."""
    try:
        # Checked on the opened file, so a swap between check and read changes nothing.
        with path.open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ValueError(
                    f"credential file {path} is not a regular file (a device, a pipe or a "
                    "directory); point it at the file holding the credential"
                )
            content = file.read(MAX_CREDENTIAL_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(
            f"credential file {path} does not exist; create it or fix the path"
        ) from None
    except OSError as exc:
        raise ValueError(f"credential file {path} cannot be read ({exc.strerror})") from None
    if len(content) > MAX_CREDENTIAL_FILE_BYTES:
        raise ValueError(
            f"credential file {path} is larger than {MAX_CREDENTIAL_FILE_BYTES // 1024} KiB; "
            "it should hold one credential"
        )
    try:
        value = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"credential file {path} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"credential file {path} is empty")
    return value


def _file_warning(path: Path) -> str | None:
    """What lets others read or replace the credential file at ``path``, if anything."""
    mode = path.stat().st_mode
    problems = []
    if mode & stat.S_IRGRP:
        problems.append("readable by its group")
    if mode & stat.S_IROTH:
        problems.append("readable by anyone")
    if mode & stat.S_IWOTH:
        problems.append("writable by anyone")
    if path.is_symlink() and _world_writable(path.resolve().parent):
        problems.append("a symlink into a world-writable directory (anyone may replace its target)")
    if not problems:
        return None
    return (
        f"credential file {path} is {', '.join(problems)}; make it private "
        "(chmod 600, owned by the user rotator runs as) in a directory only that user writes"
    )


def _world_writable(directory: Path) -> bool:
    return bool(directory.stat().st_mode & stat.S_IWOTH)
