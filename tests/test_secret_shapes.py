"""A live secret stays out of output in every shape a library may turn it into.

Percent-encoded (URLs, form bodies), JSON-escaped, base64 (HTTP Basic auth,
at any byte offset), a URL after httpx normalised it, bytes, dict keys,
objects whose repr holds it, short secrets; through a log line, an
exception rendered in a log line, and the CLI's error output. The database
password is never interpolated into the URL's structure.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog
from sqlalchemy.engine import make_url

from rotator.cli import main
from rotator.config.loader import parse_config
from rotator.errors import VendorError
from rotator.log import configure_logging
from rotator.providers.registry import provider_class
from rotator.secret import REDACTED, FileSecret, Secret, scrub
from tests.support.configs import config_text
from tests.support.servers import free_port

VALUE = 'sk/live+0123"456789=ab'
SHORT = "Xq7#p2"
SLACK = "https://HOOKS.Slack.com:443/services/T0001/B0002/Sec ret-Path-3456789"

FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "percent-encoded": lambda v: quote(v, safe=""),
    "percent-encoded path": lambda v: quote(v),
    "form-encoded": quote_plus,
    "json-escaped": lambda v: json.dumps(v)[1:-1],
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "urlsafe base64": lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
    "basic auth": lambda v: base64.b64encode(f"user:{v}".encode()).decode(),
    "basic auth, longer user": lambda v: base64.b64encode(f"users:{v}".encode()).decode(),
}


@pytest.fixture(autouse=True)
def _logging_set_up_by_a_test_ends_with_it() -> Iterator[None]:
    """``main`` points logging at this test's captured stderr, which closes after it."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def logged(**fields: object) -> str:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    structlog.get_logger("test").error("event", **fields)
    return stream.getvalue()


class Holder:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Holder({self.text!r})"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_secret_is_scrubbed_from_text(form: str) -> None:
    secret = Secret(VALUE)
    shown = FORMS[form](secret.reveal())

    assert shown not in scrub(f"before {shown} after")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_secret_is_scrubbed_from_a_log_line(form: str) -> None:
    secret = Secret(VALUE)
    shown = FORMS[form](secret.reveal())

    line = logged(detail=f"header was {shown}.")

    assert shown not in line
    assert REDACTED in line


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_secret_is_scrubbed_from_an_exception_in_a_log_line(form: str) -> None:
    secret = Secret(VALUE)
    shown = FORMS[form](secret.reveal())

    line = logged(error=VendorError(f"vendor said {shown}"))

    assert shown not in line


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_a_secret_is_scrubbed_from_the_cli_error_output(
    form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = Secret(VALUE)
    shown = FORMS[form](secret.reveal())

    with pytest.raises(SystemExit):
        main(["validate", "-c", f"{tmp_path}/{shown}"])

    error = capsys.readouterr().err
    assert str(tmp_path) in error
    assert shown not in error


def test_a_secret_in_bytes_is_scrubbed_from_a_log_line() -> None:
    secret = Secret(VALUE)

    line = logged(body=b'{"token": "' + secret.reveal().encode() + b'"}')

    assert secret.reveal() not in line
    assert json.dumps(secret.reveal())[1:-1] not in line


def test_a_secret_in_a_dict_key_is_scrubbed_from_a_log_line() -> None:
    secret = Secret(VALUE)

    line = logged(seen={secret.reveal(): 1})

    assert json.dumps(secret.reveal())[1:-1] not in line


def test_an_object_whose_repr_holds_a_secret_is_scrubbed_from_a_log_line() -> None:
    secret = Secret(VALUE)

    line = logged(thing=Holder(secret.reveal()))

    assert json.dumps(secret.reveal())[1:-1] not in line
    assert secret.reveal() not in line


def test_a_short_secret_is_scrubbed_where_it_stands_as_a_word() -> None:
    secret = Secret(SHORT)

    line = logged(detail=f"password {secret.reveal()} was refused")

    assert SHORT not in line


def test_a_webhook_url_is_scrubbed_after_httpx_normalised_it() -> None:
    secret = Secret(SLACK)
    normalised = str(httpx.URL(secret.reveal()))
    assert normalised != SLACK  # lower-cased host, no :443, the space percent-encoded

    line = logged(error=f"POST {normalised} failed")

    assert "services/T0001/B0002" not in line


def test_a_database_password_with_an_at_sign_never_reaches_the_output(tmp_path: Path) -> None:
    config = tmp_path / "rotator.yaml"
    url = "postgresql+psycopg://rotator:${DB_PASSWORD}@127.0.0.1:" + f"{free_port()}/rotator"
    config.write_text(config_text() + f'database: {{url: "{url}"}}\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "TEST_VAULT_TOKEN": "vault-token-value",
        "TEST_DO_TOKEN": "do-token-value",
        "DB_PASSWORD": "Front:Part@TailOfThePassword77",
    }

    result = subprocess.run(
        [sys.executable, "-m", "rotator", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )

    assert result.returncode != 0
    assert "cannot use the audit database" in result.stderr
    assert "TailOfThePassword77" not in result.stdout + result.stderr


def test_a_password_substituted_into_the_database_url_keeps_the_url_intact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "a@b:c/d#e?f%g h")
    url = "postgresql+psycopg://rotator:${DB_PASSWORD}@db.example.com:5432/rotator"

    config = parse_config(
        config_text() + f'database: {{url: "{url}"}}\n', "rotator.yaml", provider_class
    )

    parsed = make_url(config.database_url.reveal())
    assert parsed.password == "a@b:c/d#e?f%g h"
    assert parsed.host == "db.example.com"
    assert parsed.database == "rotator"


def test_a_database_password_may_sit_beside_the_url_as_a_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "p@ss:word/1")
    text = 'database: {url: "postgresql+psycopg://rotator@db:5432/rotator", '
    text += 'password: "${DB_PASSWORD}"}\n'

    config = parse_config(config_text() + text, "rotator.yaml", provider_class)

    parsed = make_url(config.database_url.reveal())
    assert parsed.password == "p@ss:word/1"
    assert parsed.username == "rotator"
    assert parsed.host == "db"


def test_a_database_password_beside_a_url_that_has_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "p@ss:word/1")
    text = 'database: {url: "postgresql+psycopg://rotator:other@db/rotator", '
    text += 'password: "${DB_PASSWORD}"}\n'

    with pytest.raises(Exception, match=r"database\.password") as caught:
        parse_config(config_text() + text, "rotator.yaml", provider_class)

    assert "other" not in str(caught.value)


def test_a_whole_database_url_from_the_environment_keeps_an_at_sign_in_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://rotator:Front@Tail77@db:5432/rotator")

    config = parse_config(
        config_text() + 'database: {url: "${DATABASE_URL}"}\n', "rotator.yaml", provider_class
    )

    parsed = make_url(config.database_url.reveal())
    assert parsed.password == "Front@Tail77"
    assert parsed.host == "db"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_an_object_whose_repr_fails_does_not_break_logging() -> None:
    assert "Unprintable: unprintable" in logged(thing=Unprintable())


def test_a_secret_made_after_a_scrub_is_scrubbed_by_the_next() -> None:
    assert scrub("nothing secret here") == "nothing secret here"
    later = Secret("made-after-the-first-scrub-0123")

    assert later.reveal() not in scrub(f"echoed {later.reveal()}")


def test_a_secret_file_rewritten_and_reloaded_has_its_new_value_scrubbed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value-0123")
    token = FileSecret(token_file, "first-token-value-0123")
    assert scrub("first-token-value-0123") == REDACTED
    token_file.write_text("second-token-value-4567")

    assert token.reload()
    assert scrub("second-token-value-4567") == REDACTED
