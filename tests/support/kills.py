"""Where a crash test holds a call open before it SIGKILLs rotator: a vendor or a Vault call."""

from __future__ import annotations

from dataclasses import dataclass

from rotator.sandbox.server import Hold
from tests.support.rig import Rig
from tests.support.vault_proxy import VaultProxy

#: The Vault calls a kill point can hold, by what they write under the policy's path.
_VAULT_PATHS = {
    "write": "^/v1/secret/data/{path}$",
    "metadata": "^/v1/secret/metadata/{path}$",
    "stage": "^/v1/secret/data/rotator/staging/{policy}$",
}


@dataclass(frozen=True)
class KillPoint:
    where: str  # "vendor" or "vault"
    #: An emulator operation; for Vault "write" or "metadata" (the policy's path) or "stage".
    operation: str
    after: bool  # the held call was carried out before the kill (its answer is lost)

    @property
    def label(self) -> str:
        return f"{self.where}-{self.operation}-{'after' if self.after else 'before'}"


def hold_at(rig: Rig, proxy: VaultProxy, point: KillPoint, policy: str = "app") -> Hold:
    """Hold the first call of ``point`` (rotator reaches Vault through ``proxy``)."""
    if point.where == "vault":
        pattern = _VAULT_PATHS[point.operation].format(
            path=rig.policies[policy].vault_path, policy=policy
        )
        method = "POST"
        return proxy.hold(method, pattern, after=point.after)
    method, path = rig.emulator.operations[point.operation]
    return rig.server.hold(method, path, after=point.after)
