"""Building rotator configuration files for tests."""

from __future__ import annotations

import textwrap

VALID_POLICY = """
policies:
  web:
    provider: do
    key: {agent_uuid: agent-1, api_key_uuid: key-1}
    strategy: create_then_delete
    schedule: {every: 30d}
    grace_period: 1h
    vault: {path: apps/web, field: api_key}
"""

BASE = """
vault:
  address: http://127.0.0.1:8200
  auth: {method: token, token: "${TEST_VAULT_TOKEN}"}
providers:
  do: {type: digitalocean_gradient, token: "${TEST_DO_TOKEN}"}
"""


def config_text(extra: str = VALID_POLICY, base: str = BASE) -> str:
    return textwrap.dedent(base).strip() + "\n" + textwrap.dedent(extra).strip() + "\n"
