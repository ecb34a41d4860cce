"""The shape of ``revoke_when_unused``: hold the revoke while consumers still use the old key.

Only vendors that report key usage (``Capabilities.reports_usage``) can back it;
``loader`` refuses it for the others.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from rotator.config.duration_field import Duration


class RevokeWhenUnused(BaseModel):
    """Extend grace by ``quiet`` while the old key was used that recently, up to a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quiet: Duration = timedelta(hours=1)
    max_extension: Duration = timedelta(hours=72)
    #: Once ``max_extension`` is spent: revoke anyway, or keep the old key and flag the policy.
    then: Literal["revoke", "hold"] = "hold"

    @model_validator(mode="after")
    def _positive(self) -> RevokeWhenUnused:
        if self.quiet <= timedelta(0):
            raise ValueError("quiet must be longer than 0s")
        if self.max_extension < self.quiet:
            raise ValueError("max_extension must be at least quiet")
        return self
