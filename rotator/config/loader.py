"""Loading ``rotator.yaml`` into a fully checked ``Config``, or one clear ``ConfigError``.

Every problem found is reported together, each as ``file:line: key.path:
what is wrong and what to do``. Loading reads the file and the environment
(and credential files) only: it writes nothing and calls no server.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rotator.config.consumers import Hook, KubernetesConfig, KubernetesRestartHook
from rotator.config.credentials import Credential, VaultReference, expand_env, parse_credential
from rotator.config.model import (
    AppRoleAuth,
    DaemonConfig,
    KubernetesAuth,
    PolicyConfig,
    RawConfig,
    ScheduleConfig,
    TokenAuth,
    VaultConfig,
    VaultTarget,
)
from rotator.config.yaml_source import Location, YamlDocument, dotted, load_yaml
from rotator.durations import format_duration
from rotator.errors import ConfigError
from rotator.providers.base import KeySelector, Provider, ProviderSettings, Strategy
from rotator.providers.registry import VENDORS, provider_class
from rotator.secret import Secret

DEFAULT_CONFIG_PATH = Path("rotator.yaml")


@dataclass(frozen=True)
class Policy:
    """One rotation policy, checked against its provider's capabilities."""

    name: str
    provider_name: str
    provider_settings: ProviderSettings
    provider_class: type[Provider[Any, Any]]
    selector: KeySelector
    strategy: Strategy
    schedule: ScheduleConfig
    grace_period: timedelta
    vault: VaultTarget
    #: The policy rotates the very credential rotator uses for its provider
    #: (the provider's token is ``vault:`` + this policy's Vault path and field).
    self_rotating: bool = False
    #: ``enabled: false`` in the YAML: no rotation starts, scheduled or not without --force.
    enabled: bool = True
    #: Run once Vault serves the new key, and once the old key is revoked.
    after_store: tuple[HookAction, ...] = ()
    after_revoke: tuple[HookAction, ...] = ()

    @property
    def provider_type(self) -> str:
        return self.provider_class.type_name


@dataclass(frozen=True)
class NotifyTarget:
    """A ``notify`` hook: its URL is a credential, like a webhook's."""

    url: Credential
    timeout: float


HookAction = NotifyTarget | KubernetesRestartHook


@dataclass(frozen=True)
class Webhook:
    """A notification target; its URL is a credential (Slack webhook URLs are secrets)."""

    name: str
    url: Credential
    format: str
    events: frozenset[str]
    policies: frozenset[str] | None
    timeout: float


@dataclass(frozen=True)
class Config:
    """A loaded configuration: every reference parsed, every policy checked."""

    source: str
    database_url: Secret
    vault: VaultConfig
    vault_token: Credential | None
    providers: dict[str, ProviderSettings]
    policies: dict[str, Policy]
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    webhooks: list[Webhook] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)


@dataclass
class _Issues:
    document: YamlDocument
    source: str
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, loc: Location, message: str) -> None:
        self.errors.append((self.document.line_of(loc) or 0, self._where(loc) + message))

    def warn(self, loc: Location, message: str) -> None:
        self.warnings.append(self._where(loc) + message)

    def _where(self, loc: Location) -> str:
        line = self.document.line_of(loc)
        place = f"{self.source}:{line}" if line else self.source
        return f"{place}: {dotted(loc)}: "

    def add_validation_error(
        self, exc: ValidationError, prefix: Location, model: type[Any]
    ) -> None:
        vocabulary = _field_names(model)
        for err in exc.errors():
            loc = self._document_loc((*prefix, *err["loc"]))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                key = str(loc[-1])
                message = f"unknown key {key!r}; remove it or fix its spelling"
                close = difflib.get_close_matches(key, vocabulary, n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            elif err["type"] == "missing":
                message = "this required key is missing; add it"
            self.error(loc, message)

    def _document_loc(self, loc: Location) -> Location:
        """Drop the union tags pydantic inserts, which are not keys in the file."""
        kept: list[str | int] = []
        node: Any = self.document.data
        for index, part in enumerate(loc):
            last = index == len(loc) - 1
            if isinstance(node, dict) and part not in node and not last:
                continue
            kept.append(part)
            node = node.get(part) if isinstance(node, dict) else _item(node, part)
        return tuple(kept)

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        lines = [message for _, message in sorted(self.errors, key=lambda item: item[0])]
        count = len(lines)
        header = f"{self.source}: {count} problem{'s' if count > 1 else ''} found, nothing was done"
        raise ConfigError("\n".join([header, *(f"  {line}" for line in lines)]))


def _item(node: Any, part: str | int) -> Any:
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _field_names(model: type[Any]) -> list[str]:
    """Every key name the model (and the models nested in it) accepts, for suggestions."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[Any] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            for name, info in current.model_fields.items():
                names.add(name)
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(current))
    return sorted(names)


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``-c/--config``, else ``$ROTATOR_CONFIG``, else ``./rotator.yaml``."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("ROTATOR_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    """Read, parse and check ``path``; raise ``ConfigError`` listing every problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "configuration file not found; pass -c/--config, set $ROTATOR_CONFIG, or create "
            "rotator.yaml (config.example.yaml shows every option)",
            source=source,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({exc})", source=source) from None
    return parse_config(text, source)


def parse_config(text: str, source: str) -> Config:
    """Check configuration ``text`` read from ``source`` (used in messages)."""
    document = load_yaml(text, source)
    issues = _Issues(document, source)
    if not isinstance(document.data, dict):
        issues.error((), "the top level must be a mapping with keys such as vault and policies")
        issues.raise_if_any()
    try:
        raw = RawConfig.model_validate(document.data)
    except ValidationError as exc:
        issues.add_validation_error(exc, (), RawConfig)
        issues.raise_if_any()
        raise
    database_url = _database_url(raw, issues)
    vault_token = _vault_token(raw, issues)
    providers = _providers(raw, issues)
    policies = _policies(raw, providers, issues)
    webhooks = _webhooks(raw, issues)
    issues.raise_if_any()
    return Config(
        source=source,
        database_url=database_url,
        vault=raw.vault,
        vault_token=vault_token,
        providers=providers,
        policies=policies,
        daemon=raw.daemon,
        webhooks=webhooks,
        warnings=issues.warnings,
        kubernetes=raw.kubernetes,
    )


def _database_url(raw: RawConfig, issues: _Issues) -> Secret:
    try:
        return Secret(expand_env(raw.database.url))
    except ValueError as exc:
        issues.error(("database", "url"), str(exc))
        return Secret("")


def _vault_token(raw: RawConfig, issues: _Issues) -> Credential | None:
    auth = raw.vault.auth
    loc: Location = ("vault", "auth")
    if isinstance(auth, AppRoleAuth | KubernetesAuth):
        return None
    assert isinstance(auth, TokenAuth)
    reference = auth.token or ("file:" + str(auth.token_file) if auth.token_file else None)
    reference = reference or "${VAULT_TOKEN}"
    try:
        parsed = parse_credential(reference, allow_literal=raw.allow_literal_secrets)
    except ValueError as exc:
        issues.error((*loc, "token"), str(exc))
        return None
    if isinstance(parsed.credential, VaultReference):
        issues.error((*loc, "token"), "the Vault token cannot itself come from Vault")
        return None
    if parsed.warning:
        issues.warn((*loc, "token"), parsed.warning)
    return parsed.credential


def _providers(raw: RawConfig, issues: _Issues) -> dict[str, ProviderSettings]:
    providers: dict[str, ProviderSettings] = {}
    for name, entry in raw.providers.items():
        loc: Location = ("providers", name)
        if not isinstance(entry, dict):
            issues.error(loc, "must be a mapping with at least 'type' and 'token'")
            continue
        type_name = entry.get("type")
        if type_name not in VENDORS:
            known = ", ".join(sorted(VENDORS))
            issues.error(
                (*loc, "type"), f"unknown provider type {type_name!r}; use one of: {known}"
            )
            continue
        model = provider_class(type_name).settings_model
        data = dict(entry)
        if "token" in data:
            try:
                parsed = parse_credential(data["token"], allow_literal=raw.allow_literal_secrets)
            except ValueError as exc:
                issues.error((*loc, "token"), str(exc))
                continue
            data["token"] = parsed.credential
            if parsed.warning:
                issues.warn((*loc, "token"), parsed.warning)
        try:
            providers[name] = model.model_validate(data)
        except ValidationError as exc:
            issues.add_validation_error(exc, loc, model)
    return providers


def _policies(
    raw: RawConfig, providers: dict[str, ProviderSettings], issues: _Issues
) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for name, policy in raw.policies.items():
        loc: Location = ("policies", name)
        if policy.provider not in raw.providers:
            known = ", ".join(sorted(raw.providers)) or "none are configured"
            issues.error(
                (*loc, "provider"),
                f"names provider {policy.provider!r}, which is not under 'providers:' "
                f"(configured: {known})",
            )
            continue
        settings = providers.get(policy.provider)
        if settings is None:
            continue  # the provider entry itself is invalid and already reported
        cls = provider_class(settings.type)
        if policy.strategy not in cls.capabilities.strategies:
            allowed = ", ".join(sorted(cls.capabilities.strategies))
            issues.error(
                (*loc, "strategy"),
                f"{settings.type} does not support strategy {policy.strategy.value!r}; "
                f"use one of: {allowed}",
            )
            continue
        try:
            selector = cls.selector_model.model_validate(policy.key)
        except ValidationError as exc:
            issues.add_validation_error(exc, (*loc, "key"), cls.selector_model)
            continue
        for warning in cls.policy_warnings(selector, policy.strategy, policy.grace_period):
            issues.warn(loc, warning)
        _check_consumer_refresh(policy, loc, issues)
        target = policy.vault.model_copy(update={"mount": policy.vault.mount or raw.vault.mount})
        token = settings.token
        self_rotating = isinstance(token, VaultReference) and (
            raw.vault.mount,
            token.path.strip("/"),
            token.field,
        ) == (target.mount, policy.vault.normalized_path, policy.vault.field)
        if self_rotating and policy.strategy is Strategy.REGENERATE:
            issues.error(
                (*loc, "strategy"),
                "this policy rotates the token rotator itself uses for provider "
                f"{policy.provider!r}; regenerate would kill that token before the new one is "
                "safely in Vault, and a crash in between would lock rotator out. Use "
                "create_then_delete",
            )
            continue
        policies[name] = Policy(
            name=name,
            provider_name=policy.provider,
            provider_settings=settings,
            provider_class=cls,
            selector=selector,
            strategy=policy.strategy,
            schedule=policy.schedule,
            grace_period=policy.grace_period,
            vault=target,
            self_rotating=self_rotating,
            enabled=policy.enabled,
            after_store=_hook_actions(
                policy.hooks.after_store, (*loc, "hooks", "after_store"), issues
            ),
            after_revoke=_hook_actions(
                policy.hooks.after_revoke, (*loc, "hooks", "after_revoke"), issues
            ),
        )
    _check_vault_targets_unique(raw, issues)
    return policies


def _check_consumer_refresh(policy: PolicyConfig, loc: Location, issues: _Issues) -> None:
    refresh = policy.consumers.refresh
    if refresh is None:
        return
    if policy.strategy is Strategy.REGENERATE:
        issues.warn(
            (*loc, "consumers", "refresh"),
            f"regenerate kills the old key at once, so consumers that re-read Vault every "
            f"{format_duration(refresh)} fail for up to that long after each rotation; use "
            "create_then_delete with a longer grace_period, or restart them with a hook",
        )
    elif policy.grace_period < refresh:
        issues.warn(
            (*loc, "grace_period"),
            f"grace_period {format_duration(policy.grace_period)} is shorter than "
            f"consumers.refresh {format_duration(refresh)}: the old key would be revoked "
            "before every consumer has re-read Vault; make grace_period at least "
            f"{format_duration(refresh)} (plus a margin)",
        )


def _hook_actions(hooks: list[Hook], loc: Location, issues: _Issues) -> tuple[HookAction, ...]:
    actions: list[HookAction] = []
    for index, hook in enumerate(hooks):
        if hook.kubernetes_restart is not None:
            actions.append(hook.kubernetes_restart)
        elif hook.notify is not None:
            url = _url_credential(hook.notify.url, (*loc, index, "notify", "url"), issues)
            if url is not None:
                actions.append(NotifyTarget(url, hook.notify.timeout))
    return tuple(actions)


def _url_credential(url: str, loc: Location, issues: _Issues) -> Credential | None:
    """A webhook URL: a plain http(s) URL as written, else a credential reference."""
    if url.startswith(("http://", "https://")) and "${" not in url:
        return Secret(url)
    try:
        return parse_credential(url, allow_literal=False).credential
    except ValueError as exc:
        issues.error(loc, str(exc))
        return None


def _webhooks(raw: RawConfig, issues: _Issues) -> list[Webhook]:
    webhooks = []
    for name, hook in raw.notifications.webhooks.items():
        loc: Location = ("notifications", "webhooks", name)
        for policy in hook.policies or []:
            if policy not in raw.policies:
                issues.error((*loc, "policies"), f"names policy {policy!r}, which does not exist")
        url = hook.url
        credential = _url_credential(url, (*loc, "url"), issues)
        if credential is None:
            continue
        if isinstance(credential, Secret) and url.startswith("http") and hook.format == "slack":
            # A plain URL is not treated as a secret literal; Slack's carry a token, so warn.
            issues.warn((*loc, "url"), "Slack webhook URLs are secrets; use ${ENV} or vault:")
        webhooks.append(
            Webhook(
                name=name,
                url=credential,
                format=hook.format,
                events=frozenset(hook.events),
                policies=frozenset(hook.policies) if hook.policies is not None else None,
                timeout=hook.timeout,
            )
        )
    return webhooks


def _check_vault_targets_unique(raw: RawConfig, issues: _Issues) -> None:
    def target_of(policy: PolicyConfig) -> tuple[str, str, str]:
        mount = policy.vault.mount or raw.vault.mount
        return (mount, policy.vault.normalized_path, policy.vault.field)

    targets = Counter(target_of(policy) for policy in raw.policies.values())
    for name, policy in raw.policies.items():
        target = target_of(policy)
        if targets[target] > 1:
            others = [
                other
                for other, p in raw.policies.items()
                if other != name and target_of(p) == target
            ]
            issues.error(
                ("policies", name, "vault"),
                f"writes the same Vault secret {target[1]}#{target[2]} (mount {target[0]}) as "
                f"policy {', '.join(others)}; give each policy its own path or field",
            )
