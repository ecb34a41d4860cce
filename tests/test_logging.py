"""Every log line has one format, the standard library's loggers included."""

from __future__ import annotations

import io
import json
import logging

from rotator.log import configure_logging
from rotator.secret import Secret


def test_a_standard_library_warning_is_a_json_line_like_every_other() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)

    # Not a skipped policy run: a daemon started earlier in this process filters those out.
    logging.getLogger("apscheduler.executors.default").warning(
        'Run time of job "sweep" was missed by 0:00:02.5'
    )

    [line] = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"].startswith('Run time of job "sweep" was missed')
    assert event["level"] == "warning"
    assert event["logger"] == "apscheduler.executors.default"
    assert event["timestamp"].endswith("Z")


def test_standard_library_lines_follow_the_chosen_level() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="warning")

    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0002 -> 0003")

    assert stream.getvalue() == ""


def test_a_secret_in_a_standard_library_line_is_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    secret = Secret("sk-live-abcdefghijklmnop")

    logging.getLogger("hvac.adapters").error("request failed for %s", secret.reveal())

    assert secret.reveal() not in stream.getvalue()
    assert "request failed for" in stream.getvalue()


def test_reconfiguring_does_not_repeat_lines() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=io.StringIO())
    configure_logging(json=True, stream=stream)

    logging.getLogger("httpx").warning("once")

    assert len(stream.getvalue().splitlines()) == 1
