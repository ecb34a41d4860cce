"""A forked ``rotator`` (tests/support/forkserver.py) is indistinguishable from an exec'd one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.forkserver import ForkedProcess, fork_server, start_rotator
from tests.support.rig import Rig

RigFactory = Callable[[str], Rig]


@pytest.fixture
def gradient(rig_factory: RigFactory) -> Rig:
    return rig_factory("digitalocean_gradient")


def exec_rotator(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rotator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def open_files(pid: int) -> list[str]:
    """The kind of each descriptor but the TCP connections the process opened itself (their
    number varies with timing): ``pipe``, ``socket`` (not TCP) or a path."""
    tcp = {
        line.split()[9]
        for table in ("tcp", "tcp6")
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    }
    kinds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        kind, _, inode = os.readlink(fd).partition(":")
        if not (kind == "socket" and inode.strip("[]") in tcp):
            kinds.append(kind)
    return sorted(kinds)


@pytest.mark.parametrize(
    "args", [["--help"], ["nonsense"], ["status", "--json"], ["validate"], ["plan"]], ids=" ".join
)
def test_a_forked_command_prints_and_exits_as_an_execd_one(gradient: Rig, args: list[str]) -> None:
    gradient.add_policy("app", strategy="create_then_delete")

    forked, execd = (
        (process.communicate(timeout=60), process.returncode)
        for process in (fork_server().start(args, gradient.env), exec_rotator(args, gradient.env))
    )

    assert forked == execd


def test_a_forked_rotation_logs_and_answers_as_an_execd_one(gradient: Rig) -> None:
    gradient.add_policy("one", strategy="create_then_delete", grace="0s")
    gradient.add_policy("two", strategy="create_then_delete", grace="0s")
    env = {**gradient.env, "ROTATOR_LOG_LEVEL": "info"}

    forked = fork_server().start(["rotate", "now", "one", "--json"], env)
    forked_out, forked_err = forked.communicate(timeout=60)
    execd = exec_rotator(["rotate", "now", "two", "--json"], env)
    execd_out, execd_err = execd.communicate(timeout=60)

    assert forked.returncode == execd.returncode == 0
    assert json.loads(forked_out)["result"] == json.loads(execd_out)["result"] == "completed"
    forked_events, execd_events = (
        [json.loads(line)["event"] for line in err.splitlines()] for err in (forked_err, execd_err)
    )
    assert forked_events == execd_events


def test_a_forked_process_inherits_no_descriptor_an_execd_one_lacks(gradient: Rig) -> None:
    gradient.add_policy("app", strategy="create_then_delete", grace="0s")
    held = []
    for start in (fork_server().start, exec_rotator):
        hold = gradient.server.hold(*gradient.emulator.operations["create"], after=False)
        process = start(["rotate", "now", "app"], gradient.env)
        hold.wait_arrived()
        held.append(open_files(process.pid))
        gradient.kill(process)
        hold.release()

    assert held[0] == held[1]


def test_a_killed_forked_process_exits_minus_nine_with_its_output_so_far(gradient: Rig) -> None:
    gradient.add_policy("app", strategy="create_then_delete", grace="0s")
    hold = gradient.server.hold(*gradient.emulator.operations["create"], after=False)
    process = gradient.spawn("rotate", "now", "app")
    hold.wait_arrived()

    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate(timeout=30)
    hold.release()

    assert isinstance(process, ForkedProcess)
    assert process.returncode == -signal.SIGKILL
    assert out == ""


def test_a_forked_process_runs_in_the_callers_directory_with_exactly_its_environment(
    gradient: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gradient.add_policy("app", strategy="create_then_delete")
    (tmp_path / "rotator.yaml").write_text(gradient.config_path.read_text())
    env = {k: v for k, v in gradient.env.items() if k != "ROTATOR_CONFIG"}
    monkeypatch.chdir(tmp_path)  # rotator.yaml in the working directory is the default

    found = start_rotator(["validate"], env)
    unset = start_rotator(["validate"], {k: v for k, v in env.items() if k != "SANDBOX_TOKEN"})

    assert "rotator.yaml:1:" in found.communicate(timeout=60)[1]
    assert found.returncode == 0
    assert "SANDBOX_TOKEN" in unset.communicate(timeout=60)[1]
    assert unset.returncode == 2


def test_a_run_that_changes_what_the_interpreter_reads_at_start_is_execd(gradient: Rig) -> None:
    process = start_rotator(["--help"], {**gradient.env, "PYTHONPATH": "/nonexistent"})

    assert isinstance(process, subprocess.Popen)
    assert process.communicate(timeout=60)[0].startswith("Usage: rotator")
