"""Team policy: what each scope (the installation, a Slack workspace or Discord server, a
channel) sets, and the policy in force for one place, with the scope behind every rule.

Defaults come from the most specific scope that sets them. Limits and access lists only
narrow: a model must be allowed by every scope that lists models, the largest size is the
smallest of those set, a ``false`` anywhere turns search, Batch or DMs off, a deny list
anywhere refuses, and every scope with an allow list must admit the person. So a channel's
admins can tighten their channel but never loosen what the installation's owner set.
Quotas are kept per scope too (see :meth:`Policy.quotas`). Pure values; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from bot.errors import ConfigError
from bot.model import Author, ThreadKey
from bot.options import ASPECT_RATIOS, IMAGE_SIZES, OptionInput, resolve_model

SIZE_ORDER = {size: n for n, size in enumerate(IMAGE_SIZES)}
_LISTS = ("allowed_models", "allow_users", "deny_users", "allow_roles", "deny_roles",
          "admins", "admin_roles")
_BOOLS = ("default_search", "default_image_only", "search", "batch", "direct_messages")


@dataclass(frozen=True)
class Rules:
    """What one scope sets; ``None`` means "not set here" (inherited).

    Attributes:
        default_model, default_aspect_ratio, default_size, default_search,
            default_image_only: defaults for turns that do not say.
        allowed_models: model ids that may be used.
        max_size: the largest image size (``1K``, ``2K``, ``4K``).
        search, batch, direct_messages: whether Google Search grounding, Batch requests
            and direct messages with the bot are allowed.
        allow_users, deny_users: ``platform:user_id`` (or a bare user id).
        allow_roles, deny_roles: Discord role ids (``discord:role_id`` or bare).
        admins, admin_roles: who may see the scope's usage and change its policy.
        daily_images_per_user, daily_images_per_channel: images a day.
        daily_budget_usd: US dollars a day.
        contact: who to ask about the rules, shown in refusals ("#design-ops").
    """

    default_model: str | None = None
    default_aspect_ratio: str | None = None
    default_size: str | None = None
    default_search: bool | None = None
    default_image_only: bool | None = None
    allowed_models: tuple[str, ...] | None = None
    max_size: str | None = None
    search: bool | None = None
    batch: bool | None = None
    direct_messages: bool | None = None
    allow_users: tuple[str, ...] | None = None
    deny_users: tuple[str, ...] | None = None
    allow_roles: tuple[str, ...] | None = None
    deny_roles: tuple[str, ...] | None = None
    admins: tuple[str, ...] | None = None
    admin_roles: tuple[str, ...] | None = None
    daily_images_per_user: int | None = None
    daily_images_per_channel: int | None = None
    daily_budget_usd: float | None = None
    contact: str | None = None

    def given(self) -> dict[str, Any]:
        """The rules set here, as plain values (lists for tuples), for storage and views."""
        return {f: list(v) if isinstance(v, tuple) else v
                for f in RULE_FIELDS if (v := getattr(self, f)) is not None}

    def over(self, other: Rules) -> Rules:
        """These rules, with ``other``'s filling what is not set here."""
        return replace(other, **{f: getattr(self, f) for f in RULE_FIELDS
                                 if getattr(self, f) is not None})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "policy") -> Rules:
        """Checked and normalized rules (model aliases resolved, sizes upper-cased).

        Raises:
            ConfigError: an unknown rule or a value it cannot take, naming ``where``.
        """
        unknown = set(data) - set(RULE_FIELDS)
        if unknown:
            raise ConfigError(f"unknown rules in [{where}]: {', '.join(sorted(unknown))}. "
                              f"Known: {', '.join(RULE_FIELDS)}.")
        values = {name: _value(name, value, where) for name, value in data.items()}
        return cls(**{k: v for k, v in values.items() if v is not None})


RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Rules))


def _value(name: str, value: Any, where: str) -> Any:
    try:
        return _checked(name, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}] {name}: {exc}") from None


def _checked(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _LISTS:
        items = value.split(",") if isinstance(value, str) else list(value)
        cleaned = tuple(str(v).strip() for v in items if str(v).strip())
        if name == "allowed_models":
            return tuple(dict.fromkeys(resolve_model(m) for m in cleaned))
        return cleaned
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if name in ("max_size", "default_size"):
        size = str(value).strip().upper()
        if size not in IMAGE_SIZES:
            raise ValueError(f"expected one of {', '.join(IMAGE_SIZES)}, got {value!r}")
        return size
    if name == "default_aspect_ratio":
        if str(value) not in (*ASPECT_RATIOS, "auto"):
            raise ValueError(f"expected auto or one of {', '.join(ASPECT_RATIOS)}")
        return str(value)
    if name == "default_model":
        return resolve_model(str(value))
    if name.startswith("daily_"):
        number = float(value) if name == "daily_budget_usd" else int(value)
        if isinstance(value, bool) or number < 0:
            raise ValueError(f"expected a number of at least 0, got {value!r}")
        return number
    return str(value)


ScopeKind = Literal["installation", "workspace", "channel"]


@dataclass(frozen=True)
class Scope:
    """Where a policy applies: the installation (no platform), a workspace or a channel.

    Its ``id`` names it in the TOML file and the store: ``*``, ``slack/T0123``,
    ``slack/T0123/C0456``, ``discord/<guild id>/<channel id>``.
    """

    platform: str = ""
    workspace: str = ""
    channel: str = ""

    @property
    def kind(self) -> ScopeKind:
        if self.channel:
            return "channel"
        return "workspace" if self.platform else "installation"

    @property
    def id(self) -> str:
        if not self.platform:
            return "*"
        if not self.channel:
            return f"{self.platform}/{self.workspace}"
        return f"{self.platform}/{self.workspace}/{self.channel}"

    @classmethod
    def of(cls, key: ThreadKey) -> Scope:
        """The most specific scope of a thread: its channel (a thread inherits its channel's
        policy), else its workspace; the web and CLI have only the installation."""
        if not key.workspace and not key.channel:
            return cls()
        return cls(key.platform, key.workspace, key.channel)

    @classmethod
    def parse(cls, scope_id: str) -> Scope:
        """Raises:
            ConfigError: an id that is not ``*``, ``platform/workspace`` or
                ``platform/workspace/channel``."""
        if scope_id.strip() in ("*", ""):
            return cls()
        parts = scope_id.strip().split("/")
        if len(parts) not in (2, 3) or not parts[0] or not all(parts[1:]):
            raise ConfigError(f"`{scope_id}` is not a scope: use *, platform/workspace or "
                              "platform/workspace/channel (e.g. slack/T0123/C0456)")
        return cls(*parts)

    def chain(self) -> list[Scope]:
        """This scope and the ones above it, the installation first."""
        chain = [Scope()]
        if self.platform:
            chain.append(Scope(self.platform, self.workspace))
        if self.channel:
            chain.append(self)
        return chain

    def contains(self, key: ThreadKey) -> bool:
        return all(not mine or mine == theirs for mine, theirs in
                   ((self.platform, key.platform), (self.workspace, key.workspace),
                    (self.channel, key.channel)))


@dataclass(frozen=True)
class PolicyConfig:
    """The policy as configured: the installation's rules and those of named scopes.

    Attributes:
        installation: the ``[policy]`` table's rules (with the environment's over them).
        scopes: rules by scope id, from ``[policy.workspaces."…"]`` and
            ``[policy.channels."…"]``.
        timezone: the IANA zone whose midnight resets daily quotas.
    """

    installation: Rules = field(default_factory=Rules)
    scopes: Mapping[str, Rules] = field(default_factory=dict)
    timezone: str = "UTC"

    def rules(self, scope: Scope) -> Rules:
        return self.installation if scope.kind == "installation" else \
            self.scopes.get(scope.id, Rules())


def policy_from_toml(table: Mapping[str, Any], *, env_rules: Rules | None = None
                     ) -> PolicyConfig:
    """The ``[policy]`` table, with rules given through the environment over its own.

    Raises:
        ConfigError: an unknown rule, a bad value or a badly named scope.
    """
    table = dict(table)
    timezone = str(table.pop("timezone", "UTC"))
    _check_timezone(timezone)
    scopes: dict[str, Rules] = {}
    for group, kind in (("workspaces", "workspace"), ("channels", "channel")):
        for scope_id, rules in dict(table.pop(group, {})).items():
            scope = Scope.parse(scope_id)
            if scope.kind != kind:
                raise ConfigError(f"[policy.{group}.\"{scope_id}\"] is not a {kind} id")
            scopes[scope.id] = Rules.from_dict(rules, where=f'policy.{group}."{scope_id}"')
    installation = Rules.from_dict(table)
    if env_rules is not None:
        installation = env_rules.over(installation)
    return PolicyConfig(installation=installation, scopes=scopes, timezone=timezone)


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[policy] timezone: unknown time zone {name!r} "
                          "(use an IANA name such as UTC or Europe/Berlin)") from None


@dataclass(frozen=True)
class Layer:
    """One scope's rules as they apply: configured, with run-time changes over them."""

    scope: Scope
    rules: Rules


QuotaKind = Literal["user_images", "channel_images", "budget"]
_QUOTA_ORDER = ("user_images", "channel_images", "budget")


@dataclass(frozen=True)
class Quota:
    """One daily quota a turn must fit in.

    Attributes:
        kind: images of one person, images of one channel, or dollars.
        limit: the most a day.
        set_in: the scope whose policy sets it.
        counts: the usage it counts: rows inside this scope (and of ``user`` if given).
    """

    kind: QuotaKind
    limit: float
    set_in: Scope
    counts: Scope
    user: str | None = None


def matches(entries: Iterable[str], platform: str, value: str) -> bool:
    """Whether ``platform:value`` (or a bare ``value``) is among ``entries``."""
    return any(e == value or e == f"{platform}:{value}" for e in entries)


@dataclass(frozen=True)
class Policy:
    """The policy in force in one place: every layer from the installation down."""

    scope: Scope
    layers: tuple[Layer, ...]
    timezone: str = "UTC"

    @property
    def platform(self) -> str:
        return self.scope.platform

    def defaults(self) -> OptionInput:
        """Defaults set by the policy; the most specific scope wins."""
        merged = Rules()
        for layer in self.layers:
            merged = layer.rules.over(merged)
        return OptionInput(model=merged.default_model, aspect_ratio=merged.default_aspect_ratio,
                           size=merged.default_size, search=merged.default_search,
                           image_only=merged.default_image_only)

    def most_specific(self, name: str) -> tuple[Any, Scope | None]:
        """A rule's value where it is set closest to this place, and that scope."""
        for layer in reversed(self.layers):
            value = getattr(layer.rules, name)
            if value is not None:
                return value, layer.scope
        return None, None

    def setting(self, name: str) -> list[tuple[Any, Scope]]:
        """Every value of a rule set along the chain, most specific first."""
        return [(getattr(layer.rules, name), layer.scope) for layer in reversed(self.layers)
                if getattr(layer.rules, name) is not None]

    def allowed_models(self) -> frozenset[str] | None:
        sets = [frozenset(models) for models, _ in self.setting("allowed_models")]
        return frozenset.intersection(*sets) if sets else None

    def max_size(self) -> str | None:
        sizes = [size for size, _ in self.setting("max_size")]
        return min(sizes, key=SIZE_ORDER.__getitem__) if sizes else None

    def allows(self, name: str) -> bool:
        """Whether every scope that says anything about ``name`` allows it."""
        return all(value for value, _ in self.setting(name))

    def admins(self) -> list[str]:
        return [a for entries, _ in self.setting("admins") for a in entries]

    def is_admin(self, author: Author, *, workspace_admin: bool = False) -> bool:
        """Listed as an admin (by id or Discord role) anywhere along the chain, or an admin
        of the workspace on its platform (for a workspace or channel)."""
        if workspace_admin and self.scope.kind != "installation":
            return True
        if matches(self.admins(), self.platform, author.id):
            return True
        roles = [r for entries, _ in self.setting("admin_roles") for r in entries]
        return any(matches(roles, self.platform, role) for role in author.roles)

    def quotas(self, user: str) -> list[Quota]:
        """The daily quotas of a turn by ``user`` here, one per scope that sets each.

        A scope's images-per-person quota counts the person's images inside that scope;
        an images-per-channel quota counts this channel's images; a budget counts the
        scope's spending. Every one must have room.
        """
        found: list[Quota] = []
        channel = Scope(self.platform, self.scope.workspace, self.scope.channel)
        for layer in self.layers:
            rules, scope = layer.rules, layer.scope
            if rules.daily_images_per_user is not None:
                counts = scope if scope.platform else Scope(self.platform)
                found.append(Quota("user_images", rules.daily_images_per_user, scope, counts,
                                   user))
            if rules.daily_images_per_channel is not None and self.scope.channel:
                found.append(Quota("channel_images", rules.daily_images_per_channel, scope,
                                   channel))
            if rules.daily_budget_usd is not None:
                found.append(Quota("budget", rules.daily_budget_usd, scope, scope))
        # A person's own limit is the likeliest answer to "why not?", so it is named first.
        return sorted(found, key=lambda q: _QUOTA_ORDER.index(q.kind))
