"""Whether a turn may run in a place: who asks, and the options it would use, against the
policy in force there. Pure checks that raise :class:`PolicyError` with a message naming
the rule, its scope and who to ask; the quotas are reserved by :mod:`bot.team`.

Options given with the turn that a policy forbids are refused. Options the turn did not
ask for (a thread's sticky settings, defaults) are brought within the policy instead: a
channel limited to Nano Banana quietly uses it, a sticky 4K becomes the largest size
allowed. That is what a person who never typed ``--size 4K`` expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot import refusals
from bot.errors import PolicyError
from bot.model import Author, ThreadKey
from bot.options import OptionInput, Options, caps_for, resolve
from bot.planning import PlanLimits, TurnPlan
from bot.policy import SIZE_ORDER, Policy, Scope, matches

TurnKind = Literal["turn", "reroll", "4k"]


def check_access(policy: Policy, author: Author, *, direct: bool) -> None:
    """Refuses someone the policy does not let in here (admins always get in).

    Raises:
        PolicyError: a DM where DMs are off, a denied person or role, or someone missing
            from an allow list.
    """
    if policy.is_admin(author):
        return
    platform = policy.platform
    if direct and not policy.allows("direct_messages"):
        raise PolicyError(refusals.direct_messages_off(_refusing(
            policy, "direct_messages", lambda v: not v), policy), rule="direct_messages")
    for rule, candidates in (("deny_users", (author.id,)), ("deny_roles", author.roles)):
        for entries, scope in policy.setting(rule):
            if any(matches(entries, platform, c) for c in candidates):
                raise PolicyError(refusals.denied(rule, scope, policy), rule=rule)
    for layer in reversed(policy.layers):
        users, roles = layer.rules.allow_users, layer.rules.allow_roles
        if not users and not roles:
            continue
        if matches(users or (), platform, author.id) or any(
                matches(roles or (), platform, r) for r in author.roles):
            continue
        raise PolicyError(refusals.not_listed(layer.scope, policy), rule="allow_users")


def plan_limits(policy: Policy, base: PlanLimits) -> PlanLimits:
    """The plan limits with the policy's defaults between a thread's settings and the
    configured defaults."""
    return dataclasses.replace(base, defaults=policy.defaults().over(base.defaults))


def check_batch(policy: Policy) -> None:
    """Refuses a Batch API submission where the policy turns Batch off.

    Raises:
        PolicyError: naming the rule, the scope that set it and who to ask.
    """
    if not policy.allows("batch"):
        raise PolicyError(refusals.batch_not_allowed(
            _refusing(policy, "batch", lambda v: not v), policy), rule="batch")


def enforce(policy: Policy, plan: TurnPlan, sticky: OptionInput, limits: PlanLimits, *,
            batch: bool = False) -> TurnPlan:
    """The plan within the policy's limits on models, sizes, search and Batch.

    Raises:
        PolicyError: an option given with this turn that the policy forbids.
    """
    if batch and not policy.allows("batch"):
        raise PolicyError(refusals.batch_not_allowed(
            _refusing(policy, "batch", lambda v: not v), policy), rule="batch")
    given, options = plan.given, plan.options
    forced = OptionInput()
    allowed = policy.allowed_models()
    if allowed is not None and options.model not in allowed:
        if given.model is not None or not allowed:
            raise PolicyError(refusals.model_not_allowed(
                options.caps.label, _labels(policy, allowed, limits),
                _refusing(policy, "allowed_models", lambda v: options.model not in v),
                policy), rule="allowed_models")
        forced = OptionInput(model=_fallback_model(policy, allowed, limits))
        options = resolve(given, forced.over(sticky), limits.defaults, limits.models)
    largest = policy.max_size()
    if largest and options.caps.sizes and _bigger(options, largest):
        if given.size is not None:
            raise PolicyError(refusals.size_not_allowed(
                (options.size or "1K"), largest,
                _refusing(policy, "max_size", lambda v: SIZE_ORDER[v] < SIZE_ORDER[
                    options.size or "1K"]), policy), rule="max_size")
        forced = OptionInput(size=largest).over(forced)
        options = resolve(given, forced.over(sticky), limits.defaults, limits.models)
    if options.search and not policy.allows("search"):
        if given.search:
            raise PolicyError(refusals.search_not_allowed(
                _refusing(policy, "search", lambda v: not v), policy), rule="search")
        forced = OptionInput(search=False).over(forced)
        options = resolve(given, forced.over(sticky), limits.defaults, limits.models)
    return plan if options == plan.options else dataclasses.replace(plan, options=options)


def _bigger(options: Options, largest: str) -> bool:
    return SIZE_ORDER[options.size or "1K"] > SIZE_ORDER[largest]


def _refusing(policy: Policy, rule: str, refuses: Callable[[Any], bool]) -> Scope | None:
    """The most specific scope whose value of ``rule`` refuses (``refuses(value)``)."""
    return next((scope for value, scope in policy.setting(rule) if refuses(value)), None)


def _labels(policy: Policy, models: frozenset[str], limits: PlanLimits) -> list[str]:
    return [caps_for(m, limits.models).label for m in _ordered(policy, models)]


def _ordered(policy: Policy, models: frozenset[str]) -> list[str]:
    listed = [m for entries, _ in policy.setting("allowed_models") for m in entries]
    return [m for m in dict.fromkeys(listed) if m in models]


def _fallback_model(policy: Policy, allowed: frozenset[str], limits: PlanLimits) -> str:
    preferred = [policy.defaults().model, limits.defaults.model]
    for model in preferred:
        if model and model in allowed:
            return model
    return _ordered(policy, allowed)[0]


@dataclass(frozen=True)
class Admission:
    """A turn let in and its quota reserved; the service settles or refunds it.

    Attributes:
        id: the turn's id (and its ledger entry's).
        key: where it runs (the thread may still be unknown: an empty ``thread``).
        policy: the policy it was let in under.
        limits: plan limits with the policy's defaults.
        estimate: the dollars its reservation holds.
    """

    id: str
    key: ThreadKey
    author: Author
    policy: Policy
    limits: PlanLimits
    estimate: float
    kind: TurnKind = "turn"
    direct: bool = False

    def replan(self, plan: TurnPlan, sticky: OptionInput) -> TurnPlan:
        """The plan as it will run (settings may have changed while it waited), checked
        again against the same policy; quotas are not reserved twice."""
        return enforce(self.policy, plan, sticky, self.limits)
