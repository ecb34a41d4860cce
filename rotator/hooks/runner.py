"""Which hooks a rotation still owes, running them, and recording what happened.

A hook is owed once its stage is reached: ``after_store`` once Vault serves
the new key (stored, verified, grace, completed), ``after_revoke`` once the
rotation completed; the ``after_store`` hooks run once more (as
``after_rollback``) once ``rotator rollback`` has put the old key back in
Vault, so consumers read it again. The audit trail is the record: a hook with a
``succeeded`` event for the rotation is done, so a crash between the store
step and the hook still runs it when the rotation resumes, and a hook never
runs twice after it succeeded. A failing hook is tried ``hooks.tries`` times at
once (3 by default), then again each time the rotation runs later (at the end of
grace), at most ``MAX_RUNS`` times; every failure is logged, audited and notified. None of
this can fail or undo the rotation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rotator.audit.store import AuditStore, RotationRecord
from rotator.config.consumers import KubernetesConfig, KubernetesRestartHook
from rotator.config.credentials import Credential
from rotator.config.loader import HookAction, NotifyTarget, Policy
from rotator.errors import HookFailed
from rotator.hooks import kubernetes, webhook
from rotator.log import get_logger
from rotator.secret import Secret
from rotator.vocabulary import Outcome, Result, State

log = get_logger("rotator.hooks")

#: The stage whose hooks (the policy's ``after_store`` ones) run after a rollback.
AFTER_ROLLBACK = "after_rollback"
_EVENTS = {"after_store": "stored", "after_revoke": "revoked", AFTER_ROLLBACK: "rolled_back"}
#: Runs of the rotation before a hook is given up (each makes the policy's ``hooks.tries``).
MAX_RUNS = 3


def describe(stage: str, index: int, action: HookAction) -> str:
    """A hook's stable name in the audit trail: stage, position, target (never a URL)."""
    if isinstance(action, KubernetesRestartHook):
        what = f"kubernetes_restart {action.kind} {action.namespace}/{action.name}"
    else:
        what = "notify"
    return f"{stage}[{index}] {what}"


class HookRunner:
    def __init__(
        self,
        store: AuditStore,
        kubernetes_settings: KubernetesConfig,
        resolve: Callable[[Credential], Secret],
        notify: Callable[[Outcome], None],
        clock: Callable[[], datetime],
        *,
        wait: float = 1.0,
    ) -> None:
        self._store = store
        self._kubernetes = kubernetes_settings
        self._resolve = resolve
        self._notify = notify
        self._clock = clock
        self._wait = wait

    def run_owed(self, policy: Policy, rotation: RotationRecord, mount: str) -> None:
        stages: list[tuple[str, tuple[HookAction, ...]]] = []
        if rotation.state.serves_new_key and rotation.vault_version is not None:
            stages.append(("after_store", policy.after_store))
        if rotation.state == State.COMPLETED:
            stages.append(("after_revoke", policy.after_revoke))
        if rotation.state == State.ROLLED_BACK and rotation.restored_vault_version is not None:
            stages.append((AFTER_ROLLBACK, policy.after_store))
        owed = [(stage, i, a) for stage, actions in stages for i, a in enumerate(actions)]
        if not owed:
            return
        history = [e for e in self._store.events(rotation_id=rotation.id) if e.step == "hook"]
        for stage, index, action in owed:
            name = describe(stage, index, action)
            mine = [e for e in history if e.details.get("hook") == name]
            failed_runs = sum(1 for e in mine if e.outcome == "failed")
            if any(e.outcome == "succeeded" for e in mine) or failed_runs >= MAX_RUNS:
                continue
            self._run_one(policy, rotation, mount, stage, name, action, failed_runs + 1)

    def _run_one(
        self,
        policy: Policy,
        rotation: RotationRecord,
        mount: str,
        stage: str,
        name: str,
        action: HookAction,
        run: int,
    ) -> None:
        import stamina

        details: dict[str, Any] = {"hook": name, "stage": stage}
        try:
            for attempt in stamina.retry_context(
                on=HookFailed,
                attempts=policy.hook_tries,
                wait_initial=self._wait,
                wait_max=5 * self._wait,
            ):
                with attempt:
                    self._perform(policy, rotation, mount, stage, action)
        except HookFailed as exc:
            # A finished rotation (revoked, or rolled back) is not run again: no later try.
            final = run >= MAX_RUNS or stage in ("after_revoke", AFTER_ROLLBACK)
            error = str(exc)
            log.warning("hook failed", policy=policy.name, hook=name, run=run, error=error)
            self._store.record_event(
                policy.name,
                "hook",
                "failed",
                rotation_id=rotation.id,
                details={
                    **details,
                    "run": run,
                    "tries": policy.hook_tries,
                    "error": error,
                    "final": final,
                },
            )
            then = (
                "gave up: restart or notify the consumers by hand"
                if final
                else "tried again when the rotation next runs"
            )
            self._notify(
                Outcome(
                    policy.name,
                    Result.NEEDS_ATTENTION,
                    f"hook {name} failed after {policy.hook_tries} tries ({error}); the "
                    f"{'rollback' if stage == AFTER_ROLLBACK else 'rotation'} itself stands, "
                    f"the {'old' if stage == AFTER_ROLLBACK else 'new'} key is in Vault; {then}",
                    rotation_id=rotation.id,
                    state=rotation.state,
                    new_key_id=rotation.new_key_id,
                    vault_version=rotation.vault_version,
                )
            )
            return
        self._store.record_event(
            policy.name, "hook", "succeeded", rotation_id=rotation.id, details=details
        )

    def _perform(
        self,
        policy: Policy,
        rotation: RotationRecord,
        mount: str,
        stage: str,
        action: HookAction,
    ) -> None:
        if isinstance(action, NotifyTarget):
            rolled_back = stage == AFTER_ROLLBACK
            body = {
                "source": "rotator",
                "event": _EVENTS[stage],
                "policy": policy.name,
                "rotation_id": rotation.id,
                # After a rollback the key in Vault is the old one, and the new one is gone.
                "key_id": rotation.old_key_id if rolled_back else rotation.new_key_id,
                "old_key_id": rotation.new_key_id if rolled_back else rotation.old_key_id,
                "vault": {
                    "mount": mount,
                    "path": rotation.vault_path,
                    "field": rotation.vault_field,
                    "version": rotation.restored_vault_version
                    if rolled_back
                    else rotation.vault_version,
                },
                "at": self._clock().isoformat(),
            }
            try:
                url = self._resolve(action.url)
            except Exception as exc:  # a Vault reference that cannot be read now
                raise HookFailed(f"notify hook: its URL could not be resolved ({exc})") from None
            webhook.send(url, body, timeout=action.timeout)
        else:
            kubernetes.restart(self._kubernetes, action, self._clock())
