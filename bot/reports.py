"""Usage reports people can see: a person's own usage and quotas (and, for admins, the
channel's and the workspace's, top people, cost by model), and the chart data of the web's
usage page. Built from the ledger; the wording is here so every surface says the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from bot.ledger import Ledger, Totals, UsageRow, day_window, midnight, month_start
from bot.model import Author, ThreadKey
from bot.policy import Policy, Quota, Scope
from bot.refusals import MENTIONS, duration, money, scope_phrase

Bold = Callable[[str], str]
TOP = 5


@dataclass(frozen=True)
class QuotaState:
    """A quota and how much of it today's turns used (reserved ones included)."""

    quota: Quota
    used: float

    @property
    def left(self) -> float:
        return max(0.0, self.quota.limit - self.used)


@dataclass(frozen=True)
class UsageSummary:
    """What ``/imagebot usage`` shows: everyone's own part; admins' part when ``admin``."""

    where: ThreadKey
    person: Author
    today: Totals
    month: Totals
    quotas: tuple[QuotaState, ...]
    seconds_to_reset: float
    timezone: str
    admin: bool = False
    channel: tuple[Totals, Totals] | None = None
    workspace: tuple[Totals, Totals] | None = None
    top_people: tuple[UsageRow, ...] = ()
    by_model: tuple[UsageRow, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


async def usage_summary(ledger: Ledger, policy: Policy, where: ThreadKey, person: Author, *,
                        admin: bool, labels: Mapping[str, str]) -> UsageSummary:
    now = ledger.clock()
    _, today, tomorrow = day_window(now, ledger.timezone)
    month = month_start(now, ledger.timezone)
    mine = Scope(where.platform)
    quotas = tuple([QuotaState(q, await ledger.used(q)) for q in policy.quotas(person.id)])
    summary = UsageSummary(
        where=where, person=person,
        today=await ledger.totals(since=today, scope=mine, user=person.id),
        month=await ledger.totals(since=month, scope=mine, user=person.id),
        quotas=quotas, seconds_to_reset=tomorrow - now, timezone=ledger.timezone,
        labels=labels)
    if not admin:
        return summary
    channel = Scope.of(where)
    workspace = Scope(where.platform, where.workspace)

    async def both(scope: Scope) -> tuple[Totals, Totals]:
        return (await ledger.totals(since=today, scope=scope),
                await ledger.totals(since=month, scope=scope))

    return replace(
        summary, admin=True,
        channel=await both(channel) if channel.kind == "channel" else None,
        workspace=await both(workspace) if where.workspace else None,
        top_people=tuple(await ledger.grouped("user", since=month, scope=workspace,
                                              limit=TOP)),
        by_model=tuple(await ledger.grouped("model", since=month, scope=workspace)))


def person_label(row: UsageRow, platform: str) -> str:
    """A person in a report: a mention on their own platform, else their name."""
    where, _, who = row.key.partition(":")
    return f"<@{who}>" if where == platform and platform in MENTIONS else row.label


def totals_text(totals: Totals) -> str:
    return f"{images_text(totals.images)}, {money(totals.cost)}"


def quota_text(state: QuotaState, platform: str) -> str:
    quota = state.quota
    where = scope_phrase(quota.set_in, platform)
    if quota.kind == "budget":
        return f"{money(state.left)} of the {money(quota.limit)} daily budget ({where})"
    whose = "your" if quota.kind == "user_images" else "this channel's"
    return f"{state.left:.0f} of {whose} {quota.limit:.0f} images a day ({where})"


def images_text(count: int) -> str:
    return "1 image" if count == 1 else f"{count} images"


def usage_text(summary: UsageSummary, *, bold: Bold) -> str:
    """The summary as lines of chat text; ``bold`` is the platform's bold."""
    platform = summary.where.platform
    lines = [bold("Your imagebot usage"),
             f"Today: {totals_text(summary.today)} · this month: "
             f"{totals_text(summary.month)}"]
    if summary.quotas:
        lines.append("Left today: " + " · ".join(quota_text(q, platform)
                                                 for q in summary.quotas))
        lines.append(f"Quotas reset at midnight {summary.timezone} (in "
                     f"{duration(summary.seconds_to_reset)}).")
    else:
        lines.append("No daily quotas apply to you here.")
    if not summary.admin:
        return "\n".join(lines)
    if summary.channel:
        today, month = summary.channel
        lines += ["", f"{bold('This channel')} (<#{summary.where.channel}>): today "
                      f"{totals_text(today)} · this month {totals_text(month)}"]
    if summary.workspace:
        today, month = summary.workspace
        name = scope_phrase(Scope(platform, summary.where.workspace), platform)
        lines.append(f"{bold(name[0].upper() + name[1:])}: today {totals_text(today)} · "
                     f"this month {totals_text(month)}")
    if summary.top_people:
        lines.append(bold("Top people this month") + ": " + " · ".join(
            f"{person_label(r, platform)} {totals_text(Totals(r.turns, r.images, r.cost))}"
            for r in summary.top_people))
    if summary.by_model:
        lines.append(bold("Cost by model this month") + ": " + " · ".join(
            f"{summary.labels.get(r.key, r.key)} {money(r.cost)} ({images_text(r.images)})"
            for r in summary.by_model))
    return "\n".join(lines)


@dataclass(frozen=True)
class UsageCharts:
    """The web usage page's data: per day and model, totals, top people and channels."""

    since: float
    days: tuple[str, ...]
    models: tuple[str, ...]
    daily: tuple[tuple[str, str, int, float], ...]
    totals: Totals
    top_people: tuple[UsageRow, ...]
    top_channels: tuple[UsageRow, ...]
    by_model: tuple[UsageRow, ...]

    def as_json(self, labels: Mapping[str, str]) -> dict[str, Any]:
        def rows(items: tuple[UsageRow, ...]) -> list[dict[str, Any]]:
            return [{"key": r.key, "label": labels.get(r.key, r.label), "turns": r.turns,
                     "images": r.images, "cost": r.cost} for r in items]

        return {
            "since": self.since, "days": list(self.days),
            "models": [{"id": m, "label": labels.get(m, m)} for m in self.models],
            "daily": [{"day": d, "model": m, "images": i, "cost": c}
                      for d, m, i, c in self.daily],
            "totals": self.totals.__dict__, "top_people": rows(self.top_people),
            "top_channels": rows(self.top_channels), "by_model": rows(self.by_model),
        }


async def usage_charts(ledger: Ledger, *, since: float, scope: Scope | None = None
                       ) -> UsageCharts:
    daily = tuple(await ledger.daily_by_model(since=since, scope=scope))
    first = day_window(since, ledger.timezone)[0]
    last = day_window(ledger.clock(), ledger.timezone)[0]
    return UsageCharts(
        since=since, days=_days(first, last), models=tuple(sorted({m for _, m, _, _ in daily})),
        daily=daily, totals=await ledger.totals(since=since, scope=scope),
        top_people=tuple(await ledger.grouped("user", since=since, scope=scope, limit=10)),
        top_channels=tuple(await ledger.grouped("channel", since=since, scope=scope,
                                                limit=10)),
        by_model=tuple(await ledger.grouped("model", since=since, scope=scope)))


def _days(first: str, last: str) -> tuple[str, ...]:
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    days: list[str] = []
    while day <= end and len(days) < 400:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return tuple(days)



def since_of(text: str, now: float, timezone: str = "UTC") -> float:
    """When a report starts: ``30d``, ``12h``, ``2w``, ``today``, ``month`` or a date
    (``2026-11-01``, from midnight in ``timezone``).

    Raises:
        ValueError: anything else, saying what is understood.
    """
    value = text.strip().lower()
    units = {"h": 3600, "d": 86400, "w": 7 * 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return now - int(value[:-1]) * units[value[-1]]
    if value == "today":
        return day_window(now, timezone)[1]
    if value == "month":
        return month_start(now, timezone)
    try:
        return midnight(date.fromisoformat(value), timezone)
    except ValueError:
        raise ValueError(f"`{text}` is not a time: use 30d, 12h, 2w, today, month or a date "
                         "like 2026-11-01") from None
