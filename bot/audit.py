"""The audit log (policy changes, refusals, safety blocks, deletions: who, where, when) and
the policy changes admins make at run time, stored with their audit entry in one
transaction. SQL on the store's connection, like :mod:`bot.ledger`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.model import Author, ThreadKey
from bot.policy import Scope
from bot.store_api import Store

POLICY_CHANGE = "policy.change"
REFUSED_POLICY = "refused.policy"
REFUSED_QUOTA = "refused.quota"
SAFETY_BLOCK = "blocked.safety"
TURN_DELETE = "turn.delete"
THREAD_DELETE = "thread.delete"
ACTIONS = (POLICY_CHANGE, REFUSED_POLICY, REFUSED_QUOTA, SAFETY_BLOCK, TURN_DELETE,
           THREAD_DELETE)


@dataclass(frozen=True)
class AuditEntry:
    """One thing that happened.

    Attributes:
        actor: ``platform:user_id`` of who did it (or who was refused).
        where: the place (a thread, or a channel or workspace with empty parts).
        summary: one line for people.
        detail: the facts (rule, limit, before and after, error kind...).
    """

    id: int
    at: float
    action: str
    actor: str
    actor_name: str
    where: ThreadKey
    summary: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRules:
    """Rules an admin set at run time for one scope."""

    scope: str
    rules: Mapping[str, Any]
    updated_by: str
    updated_at: float


def actor_of(author: Author, platform: str) -> str:
    return author.id if ":" in author.id or not platform else f"{platform}:{author.id}"


class AuditLog:
    """Appends to and reads the ``audit`` table; keeps run-time policy in ``policy_rules``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.db = store.db
        self.clock = clock

    async def record(self, action: str, *, actor: Author, where: ThreadKey, summary: str,
                     detail: Mapping[str, Any] | None = None) -> None:
        async with self.store._transaction():
            await self._insert(action, actor, where, summary, detail or {})

    async def _insert(self, action: str, actor: Author, where: ThreadKey, summary: str,
                      detail: Mapping[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO audit (at, action, actor, actor_name, platform, workspace, channel, "
            "thread, summary, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (self.clock(), action, actor_of(actor, where.platform), actor.name,
             where.platform, where.workspace, where.channel, where.thread, summary,
             json.dumps(dict(detail), sort_keys=True)))

    async def entries(self, *, since: float = 0.0, until: float | None = None,
                      actions: Sequence[str] = (), scope: Scope | None = None,
                      limit: int = 1000) -> list[AuditEntry]:
        """Newest first."""
        sql = "SELECT * FROM audit WHERE at >= ?"
        args: list[Any] = [since]
        if until is not None:
            sql += " AND at < ?"
            args.append(until)
        if actions:
            sql += f" AND action IN ({','.join('?' * len(actions))})"
            args.extend(actions)
        for column, value in (("platform", scope.platform if scope else ""),
                              ("workspace", scope.workspace if scope else ""),
                              ("channel", scope.channel if scope else "")):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(int(limit))
        async with self.db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [AuditEntry(
            id=int(r["id"]), at=float(r["at"]), action=r["action"], actor=r["actor"],
            actor_name=r["actor_name"],
            where=ThreadKey(r["platform"], r["workspace"], r["channel"], r["thread"]),
            summary=r["summary"], detail=json.loads(r["detail"])) for r in rows]

    # --- run-time policy -----------------------------------------------------------------

    async def stored_rules(self, scopes: Iterable[str] | None = None) -> dict[str, StoredRules]:
        """Run-time rules by scope id (all of them when ``scopes`` is ``None``)."""
        sql, args = "SELECT * FROM policy_rules", []
        if scopes is not None:
            wanted = list(scopes)
            sql += f" WHERE scope IN ({','.join('?' * len(wanted))})"
            args = wanted
        rows = await self.db.execute_fetchall(sql, args)  # one trip to the database
        return {r["scope"]: StoredRules(r["scope"], json.loads(r["rules"]), r["updated_by"],
                                        float(r["updated_at"])) for r in rows}

    async def save_rules(self, scope: Scope, rules: Mapping[str, Any], *, by: Author,
                         where: ThreadKey, summary: str, detail: Mapping[str, Any]) -> None:
        """Stores a scope's run-time rules (none left: the row goes) with its audit entry."""
        async with self.store._transaction():
            if rules:
                await self.db.execute(
                    "INSERT INTO policy_rules (scope, rules, updated_by, updated_at) "
                    "VALUES (?,?,?,?) ON CONFLICT (scope) DO UPDATE SET rules=excluded.rules, "
                    "updated_by=excluded.updated_by, updated_at=excluded.updated_at",
                    (scope.id, json.dumps(dict(rules), sort_keys=True),
                     actor_of(by, where.platform), self.clock()))
            else:
                await self.db.execute("DELETE FROM policy_rules WHERE scope=?", (scope.id,))
            await self._insert(POLICY_CHANGE, by, where, summary, detail)
