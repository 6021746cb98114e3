"""What ``/imagebot settings`` shows of a channel's policy (each rule in force and the scope
it comes from) and the menus admins change the channel's rules with. Pure values; the
adapters draw them as Block Kit or Discord components.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.options import FLASH, PRO
from bot.policy import Policy, Scope
from bot.refusals import money, person, scope_phrase

INHERIT = "inherit"


@dataclass(frozen=True)
class Choice:
    label: str
    value: str


@dataclass(frozen=True)
class Control:
    """One menu: a rule of the channel, its choices and the channel's own value now."""

    rule: str
    label: str
    choices: tuple[Choice, ...]
    current: str = INHERIT

    @property
    def current_choice(self) -> Choice:
        return next((c for c in self.choices if c.value == self.current), self.choices[0])


def _numbers(values: tuple[int, ...], show: Callable[[int], str]) -> tuple[Choice, ...]:
    return (Choice("Inherit", INHERIT), *(Choice(show(v), str(v)) for v in values))


#: The rules admins change from chat, with the choices offered (config sets any value).
CONTROLS: tuple[Control, ...] = (
    Control("allowed_models", "Models allowed", (
        Choice("Inherit", INHERIT), Choice("Nano Banana and Pro", f"{FLASH},{PRO}"),
        Choice("Nano Banana only", FLASH), Choice("Nano Banana Pro only", PRO))),
    Control("max_size", "Largest size", (
        Choice("Inherit", INHERIT), Choice("1K", "1K"), Choice("2K", "2K"),
        Choice("4K", "4K"))),
    Control("daily_images_per_user", "Images per person a day",
            _numbers((5, 10, 20, 50, 100), lambda n: f"{n} a person")),
    Control("daily_images_per_channel", "Images in this channel a day",
            _numbers((20, 50, 100, 200, 500), lambda n: f"{n} in the channel")),
    Control("daily_budget_usd", "Budget a day",
            _numbers((1, 5, 10, 25, 50, 100), lambda n: f"${n} a day")),
)
RULES = {c.rule: c for c in CONTROLS}


def choice_value(rule: str, value: str) -> Any:
    """A menu's value as the rule's value (``None`` for Inherit).

    Raises:
        KeyError: a rule that has no menu.
    """
    RULES[rule]  # noqa: B018 - only the rules with menus may be changed from chat
    if value == INHERIT:
        return None
    if rule == "allowed_models":
        return value.split(",")
    if rule.startswith("daily_"):
        return float(value) if rule == "daily_budget_usd" else int(value)
    return value


def _as_value(rule: str, value: Any) -> str:
    if value is None:
        return INHERIT
    if isinstance(value, (tuple, list)):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _controls(policy: Policy, own: Mapping[str, Any]) -> tuple[Control, ...]:
    controls = []
    for control in CONTROLS:
        current = _as_value(control.rule, own.get(control.rule))
        choices = control.choices
        if current not in (c.value for c in choices):  # a value set in the configuration
            choices = (*choices, Choice(f"{current} (as configured)", current))
        controls.append(Control(control.rule, control.label, choices, current))
    return tuple(controls)


@dataclass(frozen=True)
class PolicyView:
    """A channel's policy as people read it.

    Attributes:
        lines: (what, the value in force and where it comes from).
        controls: the menus, for admins only.
    """

    scope: Scope
    admin: bool
    lines: tuple[tuple[str, str], ...]
    controls: tuple[Control, ...] = ()


def policy_view(policy: Policy, *, admin: bool, labels: Mapping[str, str],
                configured_model: str = "") -> PolicyView:
    platform = policy.platform

    def where(scope: Scope | None) -> str:
        return f" ({scope_phrase(scope, platform)})" if scope else ""

    def label(model: str) -> str:
        return labels.get(model, model)

    lines: list[tuple[str, str]] = []
    allowed = policy.allowed_models()
    lines.append(("Models allowed", "all" if allowed is None else
                  ", ".join(sorted(label(m) for m in allowed)) or "none"))
    default, source = policy.most_specific("default_model")
    lines.append(("Default model", f"{label(default)}{where(source)}" if default
                  else f"{label(configured_model)} (imagebot's default)"))
    lines.append(("Largest size", policy.max_size() or "any (4K)"))
    for rule, name in (("search", "Google Search"), ("batch", "Batch requests"),
                       ("direct_messages", "Direct messages")):
        lines.append((name, "allowed" if policy.allows(rule) else "off"))
    for rule, name, show in (
            ("daily_images_per_user", "Images per person a day", lambda v: f"{v:.0f}"),
            ("daily_images_per_channel", "Images in the channel a day",
             lambda v: f"{v:.0f}"),
            ("daily_budget_usd", "Budget a day", money)):
        values = policy.setting(rule)
        lines.append((name, " · ".join(f"{show(v)}{where(s)}" for v, s in values)
                      or "no limit"))
    lines.append(("Access", _access(policy)))
    admins = [p for e in policy.admins() if (p := person(e, platform))]
    lines.append(("Admins", ", ".join(dict.fromkeys(admins)) or "workspace admins"))
    lines.append(("Policy id", f"`{policy.scope.id}`"))
    own = policy.layers[-1].rules.given() if policy.layers else {}
    return PolicyView(scope=policy.scope, admin=admin, lines=tuple(lines),
                      controls=_controls(policy, own) if admin else ())


def _access(policy: Policy) -> str:
    bits = []
    for rule, one, many, verb in (("allow_users", "person", "people", "allowed"),
                                  ("allow_roles", "role", "roles", "allowed"),
                                  ("deny_users", "person", "people", "denied"),
                                  ("deny_roles", "role", "roles", "denied")):
        count = sum(len(v) for v, _ in policy.setting(rule))
        if count:
            bits.append(f"{count} {one if count == 1 else many} {verb}")
    return ", ".join(bits) if bits else "everyone"


def view_text(view: PolicyView, *, bold: Callable[[str], str]) -> str:
    """The view as chat text; ``bold`` is the platform's bold."""
    head = bold(f"imagebot settings for {scope_phrase(view.scope)}")
    lines = [head, *(f"{name}: {value}" for name, value in view.lines)]
    if view.admin:
        lines.append("You are an admin here: change this channel's rules below. A channel "
                     "can only tighten what the workspace and the installation allow.")
    else:
        lines.append("Only admins can change these.")
    return "\n".join(lines)
