"""rotator: rotates third-party API keys on a schedule, crash-safely, into Vault KV v2."""

__version__ = "0.1.0"
