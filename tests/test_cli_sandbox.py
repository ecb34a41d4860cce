"""``rotator sandbox serve``: an emulator a user can paste from and inject faults into."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import yaml

from tests.test_cli_foundation import rotator


def read_until(
    process: subprocess.Popen[str], done: Callable[[list[str]], bool], timeout: float = 20
) -> list[str]:
    """Lines the process printed until ``done`` holds for them (or ``timeout`` passed)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    text = ""
    deadline = time.monotonic() + timeout
    while not done(text.splitlines(keepends=True)) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            text += os.read(fd, 65536).decode()
    return text.splitlines(keepends=True)


def test_sandbox_serve_prints_the_yaml_to_paste_and_obeys_its_control_api() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "rotator", "sandbox", "serve", "--port", "0", "--slots", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SANDBOX_TOKEN": "sandbox-token-0123456789"},
    )
    assert process.stdout is not None
    try:
        lines = read_until(process, lambda seen: sum("key:" in line for line in seen) == 2)
        base_url = lines[0].split(" emulator at ")[1].split()[0]
        faulted = httpx.post(
            base_url.split("/v2")[0] + "/_sandbox/faults",
            json={"method": "GET", "path": "agents", "status": 503},
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)

    printed = "".join(lines)
    assert "{'" not in printed, "no Python dicts"
    pasted = yaml.safe_load("".join(lines[1:3]))
    assert pasted["providers"]["sandbox"]["type"] == "digitalocean_gradient"
    keys = [yaml.safe_load(line)["key"] for line in lines if line.strip().startswith("key:")]
    assert len(keys) == 2
    assert set(keys[0]) == {"agent_uuid", "api_key_uuid"}
    assert faulted.status_code == 201


def test_sandbox_serve_help_lists_vendors_port_and_the_control_api() -> None:
    result = rotator("sandbox", "serve", "--help")

    assert "[digitalocean_gradient|h2ogpte|latitudesh|scale_agentex]" in result.stdout
    assert "Port on 127.0.0.1" in result.stdout
    assert "POST /_sandbox/faults" in result.stdout
    assert "GET  /_sandbox/state" in result.stdout


def test_sandbox_serve_refuses_an_unknown_vendor_listing_the_choices() -> None:
    result = rotator("sandbox", "serve", "--vendor", "nope", env={"SANDBOX_TOKEN": "x"})

    assert result.returncode == 2
    assert "'nope' is not one of 'digitalocean_gradient', 'h2ogpte'" in result.stderr
