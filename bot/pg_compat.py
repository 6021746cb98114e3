"""An aiosqlite-shaped connection over an asyncpg pool, so the modules that keep their own
tables on the store (the cost ledger, the audit log, batch jobs) run unchanged on
PostgreSQL: ``?`` placeholders, ``execute`` as an awaitable cursor or an ``async with``,
``rowcount``, ``executemany``, and one transaction per task.

Their schema is written once, for SQLite; :func:`postgres_ddl` turns it into PostgreSQL's
types (``REAL`` is 4-byte in PostgreSQL, so it becomes ``DOUBLE PRECISION``).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import AsyncIterator, Generator, Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

_PLACEHOLDER = re.compile(r"\?")
_TX: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar(
    "imagebot_pg_tx", default=None)


def to_postgres(sql: str) -> str:
    """``?`` placeholders become ``$1``, ``$2``… (the SQL in these modules has no ``?``
    inside string literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def postgres_ddl(sqlite_ddl: str) -> str:
    """SQLite table definitions as PostgreSQL ones (types only; the SQL is otherwise shared)."""
    ddl = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGSERIAL PRIMARY KEY", sqlite_ddl)
    ddl = re.sub(r"\bINTEGER\b", "BIGINT", ddl)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", ddl)


class Row(dict[str, Any]):
    """A result row readable by column name or by position, like ``aiosqlite.Row``."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def _row(record: asyncpg.Record) -> Row:
    # SUM() over integers is NUMERIC in PostgreSQL; SQLite gives numbers back as numbers.
    return Row({k: _plain(v) for k, v in record.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Cursor:
    """The result of one statement: its rows and how many rows it changed."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    async def fetchall(self) -> list[Row]:
        return self._rows

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Pending:
    """``await db.execute(...)`` and ``async with db.execute(...) as cur`` both work."""

    def __init__(self, db: PgConnection, sql: str, params: Sequence[Any]) -> None:
        self.db, self.sql, self.params = db, sql, params

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self.db._run(self.sql, self.params).__await__()

    async def __aenter__(self) -> Cursor:
        return await self.db._run(self.sql, self.params)

    async def __aexit__(self, *exc: object) -> None:
        return None


class PgConnection:
    """What the ledger, the audit log and batch jobs need of a connection."""

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection | None = None) -> None:
        self.pool = pool
        self._conn = conn

    def bound(self, conn: asyncpg.Connection) -> PgConnection:
        """This connection's statements, inside a transaction the caller already holds."""
        return PgConnection(self.pool, conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Pending:
        return _Pending(self, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._connection() as conn:
            await conn.executemany(to_postgres(sql), [tuple(r) for r in rows])

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await (await self._run(sql, params)).fetchall()

    async def _run(self, sql: str, params: Sequence[Any]) -> Cursor:
        statement = to_postgres(sql)
        async with self._connection() as conn:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")) or " RETURNING " in \
                    statement.upper():
                records = await conn.fetch(statement, *params)
                return Cursor([_row(r) for r in records], len(records))
            status = await conn.execute(statement, *params)
        return Cursor([], _affected(status))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        current = self._conn or _TX.get()
        if current is not None:
            yield current
            return
        async with self.pool.acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction for this task's statements; rolled back on any error."""
        if _TX.get() is not None:  # already inside one: join it
            yield
            return
        async with self.pool.acquire() as conn, conn.transaction():
            # One writer at a time, as on SQLite: a quota's check and its reservation are
            # atomic across every worker sharing the database.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('imagebot:writer'))")
            token = _TX.set(conn)
            try:
                yield
            finally:
                _TX.reset(token)


def _affected(status: str) -> int:
    """``UPDATE 3`` / ``DELETE 1`` / ``INSERT 0 1`` → the number of rows."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
