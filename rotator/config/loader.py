"""Loading ``rotator.yaml`` into a fully checked ``Config``, or one clear ``ConfigError``.

Every problem found is reported together, each as ``file:line: key.path:
what is wrong and what to do``. Loading reads the file and the environment
(and credential files) only: it writes nothing and calls no server. Which
class a provider ``type`` names is the caller's to say (``ProviderLookup``):
the configuration knows the provider contract's shape, not the catalogue.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from rotator.config.consumers import Hook, KubernetesConfig, KubernetesRestartHook
from rotator.config.credentials import Credential, VaultReference, parse_credential
from rotator.config.database import DatabaseUrl, PasswordProblem, build_database_url
from rotator.config.messages import sentence
from rotator.config.model import (
    AppRoleAuth,
    AuditConfig,
    ConfigEnvelope,
    ConfigSections,
    DaemonConfig,
    KubernetesAuth,
    PolicyConfig,
    RawConfig,
    ScheduleConfig,
    TokenAuth,
    VaultConfig,
)
from rotator.config.paths import POLICY_NAME, POLICY_NAME_RULE, is_under
from rotator.config.transport import plain_http_warning, unverified_tls_warning
from rotator.config.usage import RevokeWhenUnused
from rotator.config.yaml_source import Location, YamlDocument, dotted, load_yaml
from rotator.durations import format_duration
from rotator.errors import ConfigError
from rotator.secret import Secret
from rotator.vocabulary import Strategy

if TYPE_CHECKING:
    from rotator.providers.base import KeySelector, Provider, ProviderSettings

#: The provider class a ``type`` names; raises ``ConfigError`` saying why there is none.
ProviderLookup = Callable[[str], "type[Provider[Any, Any]]"]

#: A policy's Vault secret: (mount, path, field).
VaultSlot = tuple[str, str, str]

DEFAULT_CONFIG_PATH = Path("rotator.yaml")
NO_POLICIES = (
    "no policies: nothing to rotate; add a 'policies:' section (config.example.yaml shows "
    "every option)"
)


@dataclass(frozen=True, slots=True)
class VaultLocation:
    """Where a policy's secret lives: its checked ``vault:`` with the mount filled in.

    A plain record rather than a pydantic model: the daemon keeps one per policy.
    """

    path: str
    field: str
    mount: str

    @property
    def normalized_path(self) -> str:
        return self.path.strip("/")


# Policies are kept for the daemon's lifetime, 10,000 of them: no ``__dict__`` each.
@dataclass(frozen=True, slots=True)
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
    vault: VaultLocation
    #: The policy rotates the very credential rotator uses for its provider
    #: (the provider's token is ``vault:`` + this policy's Vault path and field).
    self_rotating: bool = False
    #: ``enabled: false`` in the YAML: no rotation starts, scheduled or not without --force.
    enabled: bool = True
    #: Run once Vault serves the new key, and once the old key is revoked.
    after_store: tuple[HookAction, ...] = ()
    after_revoke: tuple[HookAction, ...] = ()
    #: How often a failing hook is tried at once in one run (``hooks.tries``).
    hook_tries: int = 3
    #: Hold the revoke while the old key is still in use (vendors that report usage only).
    revoke_when_unused: RevokeWhenUnused | None = None

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
    ca_bundle: Path | None = None


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
    #: Kept so the password stays a live ``Secret``, scrubbed from any text that quotes it.
    database_password: Secret | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)
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
            if err["type"] == "extra_forbidden":
                key = str(loc[-1])
                message = f"unknown key {key!r}; remove it or fix its spelling"
                close = difflib.get_close_matches(key, vocabulary, n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            else:
                message = sentence(err)
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
    return sorted({name for _, name in configuration_keys(model)})


def configuration_keys(*models: type[Any]) -> set[tuple[str, str]]:
    """(model name, key) for every key the models and the models nested in them accept."""
    keys: set[tuple[str, str]] = set()
    pending: list[Any] = list(models)
    seen: set[Any] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            for name, info in current.model_fields.items():
                keys.add((current.__name__, name))
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(current))
    return keys


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``-c/--config``, else ``$ROTATOR_CONFIG``, else ``./rotator.yaml``."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("ROTATOR_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load_config(path: Path, providers: ProviderLookup) -> Config:
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
    return parse_config(text, source, providers)


def parse_config(text: str, source: str, providers: ProviderLookup) -> Config:
    """Check configuration ``text`` read from ``source`` (used in messages)."""
    document = load_yaml(text, source)
    issues = _Issues(document, source)
    if document.data is None or document.data == {}:
        raise ConfigError(NO_POLICIES, source=source)
    if not isinstance(document.data, dict):
        issues.error((), "the top level must be a mapping with keys such as vault and policies")
        issues.raise_if_any()
    broken: set[str] = set()
    try:
        raw = ConfigEnvelope.model_validate(document.data)
    except ValidationError as exc:
        issues.add_validation_error(exc, (), RawConfig)
        # Go on with what is valid, so one run reports every independent problem.
        raw, broken = _valid_sections(document.data)
    if not document.data.get("policies"):
        issues.error(("policies",), NO_POLICIES)
    database = _database_url(raw, document.data, issues)
    vault_token = None if "vault" in broken else _vault_token(raw, issues)
    settings = _providers(raw, providers, issues)
    policies = _policies(raw, settings, providers, issues)
    webhooks = _webhooks(raw, set(_mapping(document.data.get("policies"))), issues)
    _transport_warnings(raw, settings, webhooks, issues)
    if raw.audit is not None and raw.audit.key_path is None:
        issues.warn(
            ("audit", "key_path"),
            "not set: the audit chain is unkeyed, so anyone who can write the database can "
            "rewrite it undetected; keep an HMAC key in Vault ('rotator audit rotate-key') and "
            "set audit.key_path (README: Security model)",
        )
    issues.raise_if_any()
    return Config(
        source=source,
        database_url=database.url,
        database_password=database.password,
        vault=raw.vault,
        vault_token=vault_token,
        providers=settings,
        policies=policies,
        daemon=raw.daemon,
        webhooks=webhooks,
        warnings=issues.warnings,
        audit=raw.audit,
        kubernetes=raw.kubernetes,
    )


def _valid_sections(data: dict[str, Any]) -> tuple[ConfigEnvelope, set[str]]:
    """The file's valid sections, each checked on its own, and its policies; the broken ones.

    Only used once the whole file failed to validate (its errors are reported already), so
    that the checks that follow still run on everything that is not broken.
    """
    values: dict[str, Any] = {}
    broken: set[str] = set()
    for name, info in ConfigSections.model_fields.items():
        if name == "providers":
            # Entries that are not mappings are reported by the provider checks themselves.
            values[name] = _mapping(data.get(name))
            continue
        value = data[name] if name in data else info.get_default(call_default_factory=True)
        try:
            values[name] = TypeAdapter[Any](info.annotation or Any).validate_python(value)
        except ValidationError:
            broken.add(name)
            values[name] = None
    # Each policy is checked on its own by _policies.
    values["policies"] = _mapping(data.get("policies"))
    return ConfigEnvelope.model_construct(**values), broken


def _mapping(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _database_url(raw: ConfigSections, data: dict[str, Any], issues: _Issues) -> DatabaseUrl:
    loc: Location = ("database", "url")
    unknown = DatabaseUrl(Secret(""), None)
    if raw.database is None:
        return unknown
    template = raw.database.url
    written = _mapping(data.get("database")).get("url")
    if isinstance(written, str) and written.startswith("file:"):
        try:
            credential = parse_credential(written, allow_literal=False).credential
        except ValueError as exc:
            issues.error(loc, str(exc))
            return unknown
        assert isinstance(credential, Secret)  # a file: reference reads to a Secret
        template = credential.reveal().strip()
    elif (
        isinstance(written, str)
        and raw.database.password is None  # else build_database_url says to keep one of them
        and _literal_password(written)
        and not raw.allow_literal_secrets
    ):
        issues.error(
            loc,
            "holds a literal password; secrets must not be written into config files. Write "
            "the password as ${ENV_VAR} (e.g. postgresql+psycopg://rotator:${ROTATOR_DB_PASSWORD}"
            "@host/rotator), put the whole URL in a file ('file:/path') or in "
            "$ROTATOR_DATABASE_URL, or set 'allow_literal_secrets: true' for a local trial",
        )
        return unknown
    try:
        return build_database_url(template, raw.database.password)
    except PasswordProblem as exc:
        issues.error(("database", "password"), str(exc))
    except ValueError as exc:
        issues.error(loc, str(exc))
    return unknown


def _literal_password(url: str) -> bool:
    """Whether ``url`` holds a password written out rather than referenced as ``${ENV}``."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    in_query = parse_qs(parts.query).get("password", [])
    return any(value and "${" not in value for value in [password, *in_query])


def _vault_token(raw: ConfigSections, issues: _Issues) -> Credential | None:
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


def _providers(
    raw: ConfigSections, lookup: ProviderLookup, issues: _Issues
) -> dict[str, ProviderSettings]:
    providers: dict[str, ProviderSettings] = {}
    for name, entry in raw.providers.items():
        loc: Location = ("providers", name)
        if not isinstance(entry, dict):
            issues.error(loc, "must be a mapping with at least 'type' and 'token'")
            continue
        type_name = entry.get("type")
        try:
            model = lookup(str(type_name)).settings_model
        except ConfigError as exc:
            issues.error((*loc, "type"), str(exc))
            continue
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
    raw: ConfigEnvelope,
    providers: dict[str, ProviderSettings],
    lookup: ProviderLookup,
    issues: _Issues,
) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    global_mount = raw.vault.mount if raw.vault is not None else None
    targets: dict[str, VaultSlot] = {}
    schedules: dict[ScheduleConfig, ScheduleConfig] = {}
    for name, written in _each_policy(raw, issues.document):
        loc: Location = ("policies", name)
        try:
            policy = PolicyConfig.model_validate(written)
        except ValidationError as exc:
            issues.add_validation_error(exc, loc, RawConfig)
            continue
        targets[name] = (
            policy.vault.mount or global_mount or "",
            policy.vault.normalized_path,
            policy.vault.field,
        )
        if not isinstance(name, str) or not POLICY_NAME.fullmatch(name):
            issues.error(loc, f"{name!r} is refused: {POLICY_NAME_RULE}")
            continue
        if (
            raw.vault is not None
            and policy.vault.mount in (None, global_mount)
            and is_under(policy.vault.path, raw.vault.staging_prefix)
        ):
            issues.error(
                (*loc, "vault", "path"),
                f"lies inside vault.staging_prefix ({raw.vault.staging_prefix}), where rotator "
                "stages secrets it generates; choose a path outside it",
            )
            continue
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
        cls = lookup(settings.type)
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
        if policy.revoke_when_unused is not None and not cls.capabilities.reports_usage:
            issues.error(
                (*loc, "revoke_when_unused"),
                f"{settings.type} does not report when a key was last used, so rotator cannot "
                "tell whether consumers still use the old key; remove revoke_when_unused or "
                "lengthen grace_period",
            )
            continue
        target = VaultLocation(
            policy.vault.path, policy.vault.field, policy.vault.mount or global_mount or ""
        )
        token = settings.token
        self_rotating = isinstance(token, VaultReference) and (
            global_mount,
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
            # Fleets repeat a few schedules: equal ones are one object.
            schedule=schedules.setdefault(policy.schedule, policy.schedule),
            grace_period=policy.grace_period,
            vault=target,
            self_rotating=self_rotating,
            enabled=policy.enabled,
            revoke_when_unused=policy.revoke_when_unused,
            after_store=_hook_actions(
                policy.hooks.after_store, (*loc, "hooks", "after_store"), issues
            ),
            after_revoke=_hook_actions(
                policy.hooks.after_revoke, (*loc, "hooks", "after_revoke"), issues
            ),
            hook_tries=policy.hooks.tries,
        )
    _check_vault_targets_unique(targets, issues)
    _check_key_names_distinct(policies, issues)
    return policies


def _each_policy(raw: ConfigEnvelope, document: YamlDocument) -> Iterator[tuple[str, Any]]:
    """Each policy's name and data as written, dropped from the parse's data once checked.

    Checking then holds the YAML data and one policy's temporaries, not every policy's.
    """
    written = _mapping(document.data.get("policies"))
    for name, data in raw.policies.items():
        yield name, data
        raw.policies[name] = None
        if name in written:
            written[name] = None


def _transport_warnings(
    raw: ConfigSections,
    providers: dict[str, ProviderSettings],
    webhooks: list[Webhook],
    issues: _Issues,
) -> None:
    vault = raw.vault  # None when the section is broken (reported already)
    if vault is not None and vault.address:
        warning = plain_http_warning(vault.address, "the Vault token and every new secret")
        if warning:
            issues.warn(("vault", "address"), warning)
    if vault is not None and vault.verify_tls is False:
        issues.warn(("vault", "verify_tls"), unverified_tls_warning())
    for name, settings in providers.items():
        url = settings.base_url or ""
        if warning := plain_http_warning(url, "the provider's token and the keys it mints"):
            issues.warn(("providers", name, "base_url"), warning)
    for hook in webhooks:
        if isinstance(hook.url, Secret) and (
            warning := plain_http_warning(hook.url.reveal(), "notifications (and the URL)")
        ):
            issues.warn(("notifications", "webhooks", hook.name, "url"), warning)


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
            where = (*loc, index, "notify", "url")
            url = _url_credential(hook.notify.url, where, issues)
            if url is None:
                continue
            if isinstance(url, Secret) and (
                warning := plain_http_warning(url.reveal(), "the hook's notification")
            ):
                issues.warn(where, warning)
            actions.append(NotifyTarget(url, hook.notify.timeout))
    return tuple(actions)


def _url_credential(url: str, loc: Location, issues: _Issues) -> Credential | None:
    """A webhook URL: a plain http(s) URL as written, else a credential reference."""
    if url.startswith(("http://", "https://")) and "${" not in url:
        return Secret(url)
    try:
        parsed = parse_credential(url, allow_literal=False)
    except ValueError as exc:
        issues.error(loc, str(exc))
        return None
    if parsed.warning:
        issues.warn(loc, parsed.warning)
    return parsed.credential


def _webhooks(raw: ConfigSections, policy_names: set[str], issues: _Issues) -> list[Webhook]:
    webhooks: list[Webhook] = []
    if raw.notifications is None:
        return webhooks
    for name, hook in raw.notifications.webhooks.items():
        loc: Location = ("notifications", "webhooks", name)
        for policy in hook.policies or []:
            if policy not in policy_names:
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
                ca_bundle=hook.ca_bundle,
            )
        )
    return webhooks


def _check_key_names_distinct(policies: dict[str, Policy], issues: _Issues) -> None:
    """Refuse two policies on one key slot whose key names could be taken for each other's.

    Rotator recognises its keys by name (``reconcile`` revokes orphans by it), so on
    one provider account and slot no policy's name prefix, cut to the vendor's name
    limit, may equal or begin another's.
    """
    slots: dict[tuple[Any, ...], list[tuple[str, str]]] = defaultdict(list)
    for name, policy in sorted(policies.items()):
        prefix = policy.provider_class.key_prefix(policy.selector, name)
        slots[(policy.provider_name, policy.selector.slot())].append((name, prefix))
    for members in slots.values():
        for (first, first_prefix), (second, second_prefix) in combinations(members, 2):
            if not (
                first_prefix.startswith(second_prefix) or second_prefix.startswith(first_prefix)
            ):
                continue
            policy = policies[second]
            full = policy.selector.name_prefix or f"rotator-{second}"
            cut = (
                f" (cut to the vendor's {policy.provider_class.capabilities.max_name_length}"
                "-character name limit)"
                if full != second_prefix
                else ""
            )
            issues.error(
                ("policies", second, "key"),
                f"its keys would be named {second_prefix}-...{cut}, and policy {first}'s "
                f"{first_prefix}-... on the same {policy.provider_name} key slot: one "
                "policy's keys could be taken for the other's (reconcile would revoke them). "
                "Give each a key.name_prefix that does not begin the other's",
            )


def _check_vault_targets_unique(targets: dict[str, VaultSlot], issues: _Issues) -> None:
    counts = Counter(targets.values())
    for name, target in targets.items():
        if counts[target] > 1:
            others = [other for other, t in targets.items() if other != name and t == target]
            issues.error(
                ("policies", name, "vault"),
                f"writes the same Vault secret {target[1]}#{target[2]} (mount {target[0]}) as "
                f"policy {', '.join(others)}; give each policy its own path or field",
            )
