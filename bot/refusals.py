"""Every sentence a user sees when a team policy or a quota refuses a turn, in one place.

Each refusal says what was refused, which rule did it and for which scope, and who to ask.
``<@id>`` mentions work on Slack and Discord alike; other surfaces show ids as they are.
"""

from __future__ import annotations

from bot.policy import Policy, Quota, Scope

#: Platforms whose messages render ``<@id>`` as a mention.
MENTIONS = ("slack", "discord")
_WORKSPACE = {"slack": "this workspace", "discord": "this server"}
_PLATFORM_ADMIN = {"slack": "a workspace admin",
                   "discord": "someone with the Manage Server permission"}


def scope_phrase(scope: Scope | None, platform: str = "") -> str:
    """``this channel``, ``this workspace``/``this server`` or ``all of imagebot``."""
    if scope is None or scope.kind == "installation":
        return "all of imagebot"
    if scope.kind == "workspace":
        return _WORKSPACE.get(platform or scope.platform, "this workspace")
    return "this channel"


def person(entry: str, platform: str) -> str | None:
    """An admin entry as the person to ask on ``platform`` (``None``: another platform's)."""
    where, _, who = entry.rpartition(":")
    if where and where != platform:
        return None
    return f"<@{who}>" if platform in MENTIONS else entry


def who_to_ask(policy: Policy, scope: Scope | None = None) -> str:
    """``Ask <@U1> or <@U2>``, the configured contact, or the platform's usual admins.

    Args:
        scope: where the rule in question is set: only admins of that scope (or above) can
            change it, so a workspace admin is named only for a workspace's or channel's rule.
    """
    contact, _ = policy.most_specific("contact")
    if contact:
        return f"Ask {contact}"
    top = scope is not None and scope.kind == "installation"
    entries = [e for value, where in policy.setting("admins")
               if not top or where.kind == "installation" for e in value]
    people = list(dict.fromkeys(p for e in entries if (p := person(e, policy.platform))))[:3]
    if people:
        return "Ask " + (" or ".join(people) if len(people) <= 2
                         else f"{', '.join(people[:-1])} or {people[-1]}")
    if policy.platform in _PLATFORM_ADMIN and not top:
        return f"Ask {_PLATFORM_ADMIN[policy.platform]} or an imagebot admin"
    return "Ask whoever runs this imagebot (its admins are in IMAGEBOT_ADMINS)"


def _ask(policy: Policy, scope: Scope | None) -> str:
    """``who_to_ask`` in the middle of a sentence."""
    return "a" + who_to_ask(policy, scope)[1:]


def _rule(name: str, scope: Scope | None, platform: str) -> str:
    return f"rule `{name}`, set for {scope_phrase(scope, platform)}"


def model_not_allowed(label: str, allowed: list[str], scope: Scope | None, policy: Policy
                      ) -> str:
    listed = ", ".join(allowed) if allowed else "no image model"
    return (f"{label} isn't allowed here: the policy allows only {listed} "
            f"({_rule('allowed_models', scope, policy.platform)}). Pick an allowed model "
            f"with `--model`, or {_ask(policy, scope)} to change it.")


def size_not_allowed(size: str, largest: str, scope: Scope | None, policy: Policy) -> str:
    return (f"{size} images aren't allowed here: the largest size is {largest} "
            f"({_rule('max_size', scope, policy.platform)}). Ask for {largest} or smaller, "
            f"or {_ask(policy, scope)} to change it.")


def search_not_allowed(scope: Scope | None, policy: Policy) -> str:
    return (f"Google Search grounding isn't allowed here "
            f"({_rule('search', scope, policy.platform)}). Drop `--search`, or "
            f"{_ask(policy, scope)} to change it.")


def batch_not_allowed(scope: Scope | None, policy: Policy) -> str:
    return (f"Batch requests aren't allowed here ({_rule('batch', scope, policy.platform)}). "
            f"{who_to_ask(policy, scope)} to change it.")


def direct_messages_off(scope: Scope | None, policy: Policy) -> str:
    return (f"imagebot doesn't take direct messages here "
            f"({_rule('direct_messages', scope, policy.platform)}). Ask in a channel, or "
            f"{_ask(policy, scope)}.")


def denied(rule: str, scope: Scope | None, policy: Policy) -> str:
    what = "you are" if rule == "deny_users" else "one of your roles is"
    return (f"You can't use imagebot here: {what} on the policy's deny list "
            f"({_rule(rule, scope, policy.platform)}). {who_to_ask(policy, scope)} if this "
            "is a mistake.")


def not_listed(scope: Scope | None, policy: Policy) -> str:
    return (f"imagebot is open only to the people and roles the policy lists here, and you "
            f"aren't among them ({_rule('allow_users', scope, policy.platform)} / "
            f"`allow_roles`). {who_to_ask(policy, scope)} to add you.")


def money(amount: float) -> str:
    """US dollars for people: ``$0.13``, ``$0.0011``, ``$12.40``."""
    if 0 < abs(amount) < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def duration(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def resets(seconds_left: float, timezone: str) -> str:
    return f"It resets at midnight {timezone} (in {duration(seconds_left)})."


def quota_full(quota: Quota, used: float, cost: float, seconds_left: float, policy: Policy
               ) -> str:
    """The limit, what is used, when it resets and who to ask."""
    where = scope_phrase(quota.set_in, policy.platform)
    if quota.kind == "budget":
        owner = ("imagebot's" if quota.set_in.kind == "installation"
                 else f"{scope_phrase(quota.set_in, policy.platform)}'s")
        head = (f"{owner[0].upper()}{owner[1:]} daily budget of {money(quota.limit)} has no "
                f"room for this request: {money(used)} is used today and this request would "
                f"cost about {money(cost)} (rule `daily_budget_usd`, set for {where}).")
    elif quota.kind == "user_images":
        head = (f"You've used your images for today: {used:.0f} of {quota.limit:.0f} "
                f"(rule `daily_images_per_user`: {quota.limit:.0f} per person a day, set for "
                f"{where}).")
    else:
        head = (f"This channel has used its images for today: {used:.0f} of "
                f"{quota.limit:.0f} (rule `daily_images_per_channel`, set for {where}).")
    return (f"{head} {resets(seconds_left, policy.timezone)} "
            f"{who_to_ask(policy, quota.set_in)} to raise it.")
