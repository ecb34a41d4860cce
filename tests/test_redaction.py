"""Secrets stay redacted by construction: reprs, logs, audit rows, pickling."""

from __future__ import annotations

import io
import json
import pickle

import pytest
import structlog

from rotator.audit.store import AuditStore
from rotator.errors import SecretLeakError
from rotator.log import configure_logging
from rotator.secret import REDACTED, Secret

VALUE = "sk-live-0123456789abcdef"


def test_repr_str_and_format_never_show_the_value() -> None:
    secret = Secret(VALUE)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret, ">20")):
        assert VALUE not in shown
        assert REDACTED in shown


def test_reveal_returns_the_value() -> None:
    assert Secret(VALUE).reveal() == VALUE


def test_a_secret_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(VALUE))


def test_containers_of_secrets_stay_redacted() -> None:
    assert VALUE not in repr({"token": Secret(VALUE)})


def capture_logs(json_output: bool) -> tuple[io.StringIO, object]:
    stream = io.StringIO()
    configure_logging(json=json_output, stream=stream)
    return stream, structlog.get_logger("test")


@pytest.mark.parametrize("json_output", [True, False])
def test_a_secret_typed_log_value_is_redacted(json_output: bool) -> None:
    stream, log = capture_logs(json_output)
    log.info("minted", token=Secret(VALUE))  # type: ignore[attr-defined]
    assert VALUE not in stream.getvalue()
    assert REDACTED in stream.getvalue()


def test_a_live_secret_inside_other_text_is_scrubbed() -> None:
    secret = Secret(VALUE)
    stream, log = capture_logs(True)
    log.error("vendor said", detail=f"bad key {secret.reveal()} rejected")  # type: ignore[attr-defined]
    line = json.loads(stream.getvalue())
    assert VALUE not in stream.getvalue()
    assert line["detail"] == f"bad key {REDACTED} rejected"


def test_an_exception_carrying_a_live_secret_is_scrubbed() -> None:
    secret = Secret(VALUE)
    stream, log = capture_logs(True)
    try:
        raise RuntimeError(f"library echoed {secret.reveal()}")
    except RuntimeError:
        log.exception("failed")  # type: ignore[attr-defined]
    assert VALUE not in stream.getvalue()


def test_the_audit_store_refuses_a_secret_detail(migrated_pg_url: str) -> None:
    store = AuditStore.open(Secret(migrated_pg_url))
    with pytest.raises(SecretLeakError):
        store.record_event("p", "mint", "succeeded", details={"key": Secret(VALUE)})  # type: ignore[dict-item]


def test_the_audit_store_scrubs_a_live_secret_in_text(migrated_pg_url: str) -> None:
    secret = Secret(VALUE)
    store = AuditStore.open(Secret(migrated_pg_url))
    store.record_event("p", "mint", "failed", details={"error": f"echo {secret.reveal()}"})
    [event] = store.events(policy="p")
    assert event.details["error"] == f"echo {REDACTED}"
