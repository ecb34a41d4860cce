"""Every log line has one format, the standard library's loggers included."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rotator.log import configure_logging, get_logger
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


def test_lines_written_at_once_from_structlog_and_the_standard_library_never_mix(
    tmp_path: Path,
) -> None:
    # Written through to the file as stderr is: each write lets go of the GIL, so a line
    # written in two pieces (message, then newline) could take another thread's line between.
    stream = (tmp_path / "log").open("w")
    stream.reconfigure(write_through=True)
    configure_logging(json=True, stream=stream)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to meet the race
    try:
        writers = [
            threading.Thread(target=_log_many, args=(get_logger("rotator.test").info,)),
            threading.Thread(target=_log_many, args=(logging.getLogger("other").warning,)),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    finally:
        sys.setswitchinterval(switch)
        configure_logging(
            json=True, stream=io.StringIO()
        )  # later tests must not log to a closed file
        stream.close()

    lines = (tmp_path / "log").read_text().splitlines()
    assert len(lines) == 2 * LINES_EACH
    assert all(json.loads(line)["event"].startswith("line ") for line in lines)


LINES_EACH = 5000


def _log_many(log: Callable[[str], object]) -> None:
    for number in range(LINES_EACH):
        log(f"line {number}")
