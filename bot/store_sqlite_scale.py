"""SQLite's part of running several processes on one database: thread lines (tickets with
an expiry), platform installations and OAuth states.

A mixin of :class:`bot.store.HistoryStore`, kept apart so the scale-out tables and their
queries live in one place; :data:`SCALE_SCHEMA` is one of the store's migrations. Each
statement stands alone (autocommit), so no transaction is ever held while a turn runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiosqlite

from bot.store_api import Orphan

SCALE_SCHEMA = """
    CREATE TABLE thread_line (
        ticket INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX thread_line_line ON thread_line(line, ticket);
    CREATE INDEX thread_line_holder ON thread_line(holder);
    CREATE TABLE installations (
        platform TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (platform, key)
    );
    CREATE TABLE oauth_states (
        state TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    );
"""

#: A ticket carries its turn's request, so a live process can take an orphan over.
LINE_REQUEST_SCHEMA = """
    ALTER TABLE thread_line ADD COLUMN request TEXT;
    ALTER TABLE thread_line ADD COLUMN ttl REAL NOT NULL DEFAULT 0;
    ALTER TABLE thread_line ADD COLUMN joined_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE thread_line ADD COLUMN adoptions INTEGER NOT NULL DEFAULT 0;
"""
#: A ticket that is gone (``?2`` is now, ``?1`` the line): expired, and for one with a request (an
#: orphan), past its adoption window too.
_GONE = "expires_at<?2 AND (request IS NULL OR expires_at+ttl<?2)"


class SqliteScaleMixin:
    """Lines, installations and OAuth states on the store's one connection."""

    db: aiosqlite.Connection
    _write_lock: asyncio.Lock

    # Every write takes the write lock first (BEGIN IMMEDIATE): in WAL mode an autocommit
    # DELETE or UPDATE reads before it writes, and another connection's commit in between
    # makes it fail at once with "database is locked", whatever the busy timeout.
    _transaction: Callable[[], contextlib.AbstractAsyncContextManager[None]]

    # --- thread lines --------------------------------------------------------------------

    async def line_join(self, line: str, holder: str, ttl: float,
                        request: str | None = None) -> int:
        now = time.time()
        async with self._transaction():
            cur = await self.db.execute(
                "INSERT INTO thread_line (line, holder, expires_at, request, ttl, joined_at) "
                "VALUES (?,?,?,?,?,?)", (line, holder, now + ttl, request, ttl, now))
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    async def line_first(self, line: str, ticket: int) -> bool | None:
        now = time.time()
        first = await self._line_head(line, ticket)
        if any(expires < now for _, expires in first):
            # Tickets ahead that expired (a process that died) may be gone (an orphan keeps
            # its place one more lease); otherwise nothing to purge could change the answer,
            # and no write is needed.
            async with self._transaction():
                await self.db.execute(
                    f"DELETE FROM thread_line WHERE line=?1 AND {_GONE}", (line, now))
            first = await self._line_head(line, ticket)
        rows = [t for t, _ in first]
        if ticket not in rows:
            return None
        return rows[0] == ticket

    async def _line_head(self, line: str, ticket: int) -> list[tuple[int, float]]:
        """The first two tickets of a line up to ``ticket``, with their expiry."""
        return [(int(r[0]), float(r[1])) for r in await self.db.execute_fetchall(
            "SELECT ticket, expires_at FROM thread_line WHERE line=? AND ticket<=? "
            "ORDER BY ticket LIMIT 2", (line, ticket))]

    async def line_renew(self, holder: str, ttl: float) -> None:
        async with self._transaction():
            await self.db.execute("UPDATE thread_line SET expires_at=? WHERE holder=?",
                                  (time.time() + ttl, holder))

    async def line_leave(self, ticket: int) -> None:
        async with self._transaction():
            await self.db.execute("DELETE FROM thread_line WHERE ticket=?", (ticket,))

    async def line_busy(self, line: str) -> bool:
        async with self.db.execute(
                f"SELECT 1 FROM thread_line WHERE line=?1 AND NOT ({_GONE}) LIMIT 1",
                (line, time.time())) as cur:
            return await cur.fetchone() is not None

    async def line_orphans(self, max_adoptions: int, limit: int = 50) -> list[Orphan]:
        now = time.time()
        async with self.db.execute(
                "SELECT ticket, line, request, joined_at, adoptions, holder FROM thread_line "
                "WHERE request IS NOT NULL AND expires_at<? AND expires_at+ttl>=? "
                "AND adoptions<? ORDER BY ticket LIMIT ?",
                (now, now, max_adoptions, limit)) as cur:
            rows = await cur.fetchall()
        return [Orphan(int(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), str(r[5]))
                for r in rows]

    async def line_adopt(self, ticket: int, holder: str, ttl: float) -> bool:
        now = time.time()
        async with self._transaction():
            cur = await self.db.execute(
                "UPDATE thread_line SET holder=?, expires_at=?, adoptions=adoptions+1 "
                "WHERE ticket=? AND expires_at<?", (holder, now + ttl, ticket, now))
            return cur.rowcount == 1

    # --- installations and OAuth states ----------------------------------------------------

    async def save_installation(self, platform: str, key: str, data: Mapping[str, Any]) -> None:
        async with self._transaction():
            await self.db.execute(
                "INSERT INTO installations (platform, key, data, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (platform, key) DO UPDATE SET data=excluded.data, "
                "updated_at=excluded.updated_at",
                (platform, key, json.dumps(dict(data), sort_keys=True), time.time()))

    async def find_installation(self, platform: str, key: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT data FROM installations WHERE platform=? AND key=?",
                                   (platform, key)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def delete_installation(self, platform: str, key: str) -> bool:
        async with self._transaction():
            cur = await self.db.execute(
                "DELETE FROM installations WHERE platform=? AND key=?", (platform, key))
            return cur.rowcount > 0

    async def issue_state(self, state: str, expires_at: float) -> None:
        async with self._transaction():
            await self.db.execute("DELETE FROM oauth_states WHERE expires_at<?", (time.time(),))
            await self.db.execute("INSERT INTO oauth_states (state, expires_at) VALUES (?,?)",
                                  (state, expires_at))

    async def consume_state(self, state: str) -> bool:
        async with self._transaction():
            cur = await self.db.execute(
                "DELETE FROM oauth_states WHERE state=? AND expires_at>=?", (state, time.time()))
            return cur.rowcount > 0
