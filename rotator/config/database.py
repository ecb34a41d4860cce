"""The audit database's URL, built so that no credential can change its structure.

The shipped pattern ``postgresql+psycopg://rotator:${ROTATOR_DB_PASSWORD}@db/rotator``
puts a password into a URL. Pasted in as it is, a password holding ``@``,
``:``, ``/`` or ``#`` would move the host (a driver error then quotes the
password's tail as a host name). So each ``${VAR}`` inside the URL is
percent-encoded where it lands, as SQLAlchemy's ``URL.create`` renders a
password; ``database.password`` may instead hold the password as a credential
reference beside a URL without one. The decoded password is kept as a live
``Secret``, so any text that quotes it is scrubbed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from rotator.config.credentials import ParsedCredential, expand_env, parse_credential
from rotator.secret import Secret


class PasswordProblem(ValueError):
    """What is wrong lies in ``database.password``, not in ``database.url``."""


@dataclass(frozen=True)
class DatabaseUrl:
    url: Secret
    #: The password inside ``url``, decoded; ``None`` when the URL has none.
    password: Secret | None


def build_database_url(
    template: str, password: str | None, env: Mapping[str, str] | None = None
) -> DatabaseUrl:
    """``template`` with its ``${VAR}``s filled in safely, plus ``password`` if given.

    Raises ``ValueError`` naming what to fix (``PasswordProblem`` when it is
    ``password``); the message never holds a value.
    """
    whole = template.startswith("${") and template.find("}") == len(template) - 1
    url = expand_env(template, env, encode=str if whole else lambda value: quote(value, safe=""))
    if password is not None:
        try:
            parsed = parse_credential(password, allow_literal=False, env=env)
        except ValueError as exc:
            raise PasswordProblem(str(exc)) from None
        url = _with_password(url, parsed)
    userinfo = _userinfo(url)
    if not userinfo or ":" not in userinfo:
        return DatabaseUrl(Secret(url), None)
    # The last '@' before the path ends the password, so a URL pasted whole (from
    # $ROTATOR_DATABASE_URL, say) keeps an unescaped '@' in it; escape it for the drivers.
    user, _, secret = userinfo.partition(":")
    decoded = unquote(secret)
    url = _with_userinfo(url, userinfo, f"{user}:{quote(decoded, safe='')}")
    return DatabaseUrl(Secret(url), Secret(decoded))


def _userinfo(url: str) -> str | None:
    authority = url.partition("://")[2].partition("/")[0]
    return authority.rpartition("@")[0] if "@" in authority else None


def _with_password(url: str, parsed: ParsedCredential) -> str:
    credential = parsed.credential
    if not isinstance(credential, Secret):
        raise PasswordProblem(
            "must be '${ENV_VAR}' or 'file:/path': the audit database is opened before Vault"
        )
    userinfo = _userinfo(url)
    if not userinfo:
        raise PasswordProblem(
            "needs a user name in database.url (postgresql+psycopg://USER@host/dbname)"
        )
    if ":" in userinfo:
        raise PasswordProblem("is set, but database.url holds a password too; keep one of them")
    return _with_userinfo(url, userinfo, f"{userinfo}:{quote(credential.reveal(), safe='')}")


def _with_userinfo(url: str, userinfo: str, replacement: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{replacement}@{rest[len(userinfo) + 1 :]}"
