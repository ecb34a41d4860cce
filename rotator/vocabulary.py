"""Words the configuration and the providers share, defined below both of them.

The configuration names a rotation ``strategy`` before any provider is known,
and providers declare which strategies they support; both import it from here
so that neither has to import the other.
"""

from __future__ import annotations

from enum import StrEnum


class Strategy(StrEnum):
    """How a key is replaced at the vendor."""

    REGENERATE = "regenerate"
    CREATE_THEN_DELETE = "create_then_delete"
