"""The names rotator gives its entries in a Vault secret's ``custom_metadata``.

Kept apart from ``rotator.vault`` so that code which only names metadata does
not import the Vault client (a CronJob run with nothing due never needs it).
"""

from __future__ import annotations


def metadata_key(field: str, item: str) -> str:
    """The ``custom_metadata`` key under which rotator records ``item`` for ``field``."""
    return f"rotator.{field}.{item}"
