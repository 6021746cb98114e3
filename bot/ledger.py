"""The cost ledger: one row per turn, reserved when the turn is let in, then committed with
its real cost or refunded. Quotas and reports read it.

Its SQL runs on the store's connection and inside the store's write transactions, so a
reservation (count what is used, check every quota, insert) is atomic: twenty turns let in
at once against a quota of five reserve exactly five, in this process or another one on
the same database file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot.model import ThreadKey, Usage
from bot.policy import Quota, Scope
from bot.store_api import Store

GroupBy = Literal["user", "channel", "workspace", "platform", "model", "day"]
GROUPS: dict[str, tuple[str, ...]] = {
    "user": ("platform", "user_id"), "channel": ("platform", "workspace", "channel"),
    "workspace": ("platform", "workspace"), "platform": ("platform",), "model": ("model",),
    "day": ("day",),
}
#: A reservation older than this belongs to a turn that cannot still be running.
STALE_AFTER = 2 * 3600.0


def day_window(now: float, timezone: str) -> tuple[str, float, float]:
    """(the day's date, its first second, the next day's first second) in ``timezone``."""
    today = datetime.fromtimestamp(now, ZoneInfo(timezone)).date()
    return (today.isoformat(), midnight(today, timezone),
            midnight(today + timedelta(days=1), timezone))


def month_start(now: float, timezone: str) -> float:
    return midnight(datetime.fromtimestamp(now, ZoneInfo(timezone)).date().replace(day=1),
                    timezone)


def midnight(day: date, timezone: str) -> float:
    """The first second of ``day`` in ``timezone``."""
    return datetime.combine(day, clock_time(0), ZoneInfo(timezone)).timestamp()


@dataclass(frozen=True)
class Entry:
    """A turn's ledger row as reserved: where, who, what and its estimated cost."""

    id: str
    kind: str
    key: ThreadKey
    user_id: str
    user_name: str
    model: str
    size: str
    estimate: float
    reference_images: int = 0
    #: Images the turn will make (``--count`` makes several): each counts in the quota.
    images: int = 1
    batch: bool = False


@dataclass(frozen=True)
class Totals:
    """Committed turns, their images and their cost."""

    turns: int = 0
    images: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class UsageRow:
    """One group of a usage report.

    Attributes:
        key: what the group is (``slack:U123``, ``slack/T1/C2``, a model id, a day).
        label: a person's name where one is known, else the key.
    """

    key: str
    label: str
    turns: int
    images: int
    cost: float


@dataclass(frozen=True)
class Stale:
    """A reservation left behind by a process that stopped; ``usage`` when its turn was
    committed after all."""

    id: str
    model: str
    size: str
    batch: bool
    usage: Usage | None
    images: int


Refuse = Callable[[Quota, float, float], Exception]


class Ledger:
    """Reservations, costs and reports over the store's ``ledger`` table."""

    def __init__(self, store: Store, *, timezone: str = "UTC",
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.db = store.db
        self.timezone = timezone
        self.clock = clock

    async def reserve(self, entry: Entry, quotas: Sequence[Quota], refuse: Refuse) -> None:
        """Checks every quota and records the reservation, in one write transaction.

        Raises:
            Exception: ``refuse(quota, used, seconds_to_reset)`` for the first quota
                without room; nothing is recorded then.
        """
        now = self.clock()
        day, start, end = day_window(now, self.timezone)
        async with self.store._transaction():
            for quota in quotas:
                need = entry.estimate if quota.kind == "budget" else entry.images
                used = await self._used(quota, start)
                if used + need > quota.limit + 1e-9:
                    raise refuse(quota, used, end - now)
            key = entry.key
            await self.db.execute(
                "INSERT INTO ledger (id, state, kind, platform, workspace, channel, thread, "
                "user_id, user_name, model, size, batch, images, reference_images, cost_usd, "
                "day, created_at) VALUES (?, 'reserved', ?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (entry.id, entry.kind, key.platform, key.workspace, key.channel, key.thread,
                 entry.user_id, entry.user_name, entry.model, entry.size, int(entry.batch),
                 entry.images, entry.reference_images, entry.estimate, day, now))

    async def _used(self, quota: Quota, since: float) -> float:
        column = "cost_usd" if quota.kind == "budget" else "images"
        where, args = _scope_filter(quota.counts, quota.user)
        async with self.db.execute(
                f"SELECT COALESCE(SUM({column}), 0) FROM ledger WHERE state != 'refunded' "
                f"AND created_at >= ?{where}", (since, *args)) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else 0.0

    async def used(self, quota: Quota) -> float:
        """What a quota counts today (reserved and committed)."""
        return await self._used(quota, day_window(self.clock(), self.timezone)[1])

    async def settle(self, entry_id: str, *, key: ThreadKey | None, model: str, size: str,
                     images: int, usage: Usage, cost: float) -> None:
        """Commits a reservation with what the turn really made and cost (``key``: the
        thread it ran in, when it was not known at the reservation). A reservation given
        back while its turn still ran (a shutdown) is committed all the same: the money
        was spent."""
        async with self.store._transaction():
            await self.db.execute(
                "UPDATE ledger SET state='committed', thread=COALESCE(?, thread), model=?, "
                "size=?, images=?, prompt_tokens=?, output_tokens=?, thought_tokens=?, "
                "cost_usd=?, settled_at=? WHERE id=? AND state != 'committed'",
                (key.thread if key else None, model, size, images, usage.prompt_tokens,
                 usage.output_tokens, usage.thought_tokens, cost, self.clock(), entry_id))

    async def refund(self, entry_id: str) -> bool:
        """Gives a reservation back (the turn failed or was cancelled)."""
        async with self.store._transaction():
            cur = await self.db.execute(
                "UPDATE ledger SET state='refunded', settled_at=? WHERE id=? "
                "AND state='reserved'", (self.clock(), entry_id))
            return cur.rowcount > 0

    async def stale(self, older_than: float = STALE_AFTER) -> list[Stale]:
        """Reservations no running turn can own any more, with the usage of those whose
        turn was committed (the process stopped between the two writes)."""
        async with self.db.execute(
                "SELECT l.id, l.model, l.size, l.batch, u.prompt_tokens, u.output_tokens, "
                "u.thought_tokens, u.total_tokens, u.images, u.id AS usage_id FROM ledger l "
                "LEFT JOIN usage u ON u.turn_id = l.id WHERE l.state = 'reserved' "
                "AND l.created_at < ?", (self.clock() - older_than,)) as cur:
            rows = await cur.fetchall()
        return [Stale(id=r["id"], model=r["model"], size=r["size"], batch=bool(r["batch"]),
                      usage=None if r["usage_id"] is None else Usage(
                          r["prompt_tokens"], r["output_tokens"], r["thought_tokens"],
                          r["total_tokens"]),
                      images=int(r["images"] or 0)) for r in rows]

    # --- reports -------------------------------------------------------------------------

    async def totals(self, *, since: float, until: float | None = None,
                     scope: Scope | None = None, user: str | None = None) -> Totals:
        where, args = _report_filter(since, until, scope, user)
        async with self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(images), 0), COALESCE(SUM(cost_usd), 0) "
                f"FROM ledger WHERE {where}", args) as cur:
            row = await cur.fetchone()
        return Totals(int(row[0]), int(row[1]), round(float(row[2]), 6)) if row else Totals()

    async def grouped(self, by: GroupBy, *, since: float, until: float | None = None,
                      scope: Scope | None = None, user: str | None = None,
                      limit: int | None = None) -> list[UsageRow]:
        """Committed usage grouped by person, channel, workspace, platform, model or day;
        days in order, the rest dearest first."""
        columns = ", ".join(GROUPS[by])
        where, args = _report_filter(since, until, scope, user)
        order = "day" if by == "day" else "SUM(cost_usd) DESC, SUM(images) DESC"
        sql = (f"SELECT {columns}, MAX(user_name) AS name, COUNT(*), SUM(images), "
               f"SUM(cost_usd) FROM ledger WHERE {where} GROUP BY {columns} ORDER BY {order}")
        if limit:
            sql += f" LIMIT {int(limit)}"
        async with self.db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        width = len(GROUPS[by])
        return [_row(by, tuple(r[:width]), r["name"], *r[width + 1:]) for r in rows]

    async def daily_by_model(self, *, since: float, until: float | None = None,
                             scope: Scope | None = None) -> list[tuple[str, str, int, float]]:
        """(day, model, images, cost) for each day and model with committed turns."""
        where, args = _report_filter(since, until, scope, None)
        async with self.db.execute(
                "SELECT day, model, SUM(images), SUM(cost_usd) FROM ledger "
                f"WHERE {where} GROUP BY day, model ORDER BY day, model", args) as cur:
            rows = await cur.fetchall()
        return [(r[0], r[1], int(r[2]), round(float(r[3]), 6)) for r in rows]

    async def entries(self, *, since: float, until: float | None = None,
                      scope: Scope | None = None) -> list[dict[str, Any]]:
        """Committed rows themselves, oldest first (CSV exports)."""
        where, args = _report_filter(since, until, scope, None)
        async with self.db.execute(
                "SELECT id, kind, platform, workspace, channel, thread, user_id, user_name, "
                "model, size, batch, images, reference_images, prompt_tokens, output_tokens, "
                f"thought_tokens, cost_usd, day, created_at FROM ledger WHERE {where} "
                "ORDER BY created_at", args) as cur:
            return [dict(r) for r in await cur.fetchall()]


def _scope_filter(scope: Scope, user: str | None) -> tuple[str, list[Any]]:
    where, args = "", []
    for column, value in (("platform", scope.platform), ("workspace", scope.workspace),
                          ("channel", scope.channel), ("user_id", user)):
        if value:
            where += f" AND {column} = ?"
            args.append(value)
    return where, args


def _report_filter(since: float, until: float | None, scope: Scope | None, user: str | None
                   ) -> tuple[str, list[Any]]:
    where, args = _scope_filter(scope or Scope(), user)
    sql = "state = 'committed' AND created_at >= ?" + where
    if until is not None:
        sql += " AND created_at < ?"
        args.append(until)
    return sql, [since, *args]


def _row(by: str, key: tuple[Any, ...], name: str | None, turns: int, images: int,
         cost: float) -> UsageRow:
    if by == "user":
        text = f"{key[0]}:{key[1]}"
        label = name or text
    elif by in ("channel", "workspace"):
        text = "/".join(str(k) for k in key)
        label = "/".join(str(k) for k in key if k)
    else:
        text = label = str(key[0])
    return UsageRow(key=text, label=label, turns=int(turns), images=int(images or 0),
                    cost=round(float(cost or 0), 6))
