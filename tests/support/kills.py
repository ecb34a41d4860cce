"""Where a crash test holds a call open before it SIGKILLs rotator: a vendor or a Vault call."""

from __future__ import annotations

from dataclasses import dataclass

from rotator.sandbox.server import Hold
from tests.support.rig import Rig
from tests.support.vault_proxy import VaultProxy

#: The Vault calls a kill point can hold, by what they write under the policy's path: the
#: method and the path. rotator merges its custom_metadata with a PATCH (the rig's token may).
_VAULT_CALLS = {
    "write": ("POST", "^/v1/secret/data/{path}$"),
    "metadata": ("PATCH", "^/v1/secret/metadata/{path}$"),
    "stage": ("POST", "^/v1/secret/data/rotator/staging/{policy}$"),
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
        method, pattern = _VAULT_CALLS[point.operation]
        path = pattern.format(path=rig.policies[policy].vault_path, policy=policy)
        return proxy.hold(method, path, after=point.after)
    method, path = rig.emulator.operations[point.operation]
    return rig.server.hold(method, path, after=point.after)
