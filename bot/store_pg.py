"""PostgreSQL persistence (asyncpg), for several imagebot processes on one database.

The same tables and the same meaning as the SQLite store (:mod:`bot.store`): history rows
name content-addressed blobs (``bytea``, stored once by hash), a turn's blobs are written
first and its rows in one short transaction, and event ids are claimed through a unique
key. Thread lines (:mod:`bot.leases`) use the database's clock, so workers on several hosts
agree on when a ticket expires. Migrations are this module's own (:data:`MIGRATIONS`),
applied under an advisory lock so workers starting together migrate once.
Files API records and blob uses are :mod:`bot.store_files`'s, the same code as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from google.genai import types

from bot import history, store_files
from bot.errors import ConfigError, NotFoundError
from bot.history import StoredContent
from bot.model import ThreadKey, ThreadSummary, TurnView
from bot.options import OptionInput
from bot.pg_compat import PgConnection, postgres_ddl
from bot.store_api import NewTurn, Orphan, summary_row, turn_row
from bot.store_sqlite_scale import LINE_REQUEST_SCHEMA
from bot.tables import BATCH_SCHEMA, TEAM_SCHEMA, VARIATIONS_SCHEMA

logger = logging.getLogger(__name__)

#: The database's clock in seconds, so hosts with skewed clocks agree on lease expiry.
_NOW = "extract(epoch from clock_timestamp())"
#: A ticket that is gone: expired, and for one with a request (an orphan a live worker may
#: take over), past its adoption window too.
_GONE = f"expires_at < {_NOW} AND (request IS NULL OR expires_at + ttl < {_NOW})"

#: A migration: SQL, or a function given the migrating transaction's connection.
Migration = str | Callable[[PgConnection], Awaitable[None]]
#: Held shared by every turn's commit and exclusively by a thread's delete, so a delete
#: never removes a blob a turn committing meanwhile has just found present (per schema:
#: advisory locks are database-wide).
_BLOBS_LOCK = "hashtext('imagebot:blobs:' || current_schema())"


async def _files_schema(db: PgConnection) -> None:
    """Schema 5: Gemini Files API records and blob uses, SQLite's tables (``bot.store_files``)
    with PostgreSQL's types, and the uses of every blob already stored."""
    await store_files.create_tables(
        db, postgres_ddl(store_files.SCHEMA.replace("WITHOUT ROWID", "")))


MIGRATIONS: tuple[Migration, ...] = (
    # 1: the whole schema of SQLite's 1-3 (threads ... events, lines, installations)
    """
    CREATE TABLE threads (
        id BIGSERIAL PRIMARY KEY,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (platform, workspace, channel, thread)
    );
    CREATE TABLE contents (
        id BIGSERIAL PRIMARY KEY,
        thread_id BIGINT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        turn_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        UNIQUE (thread_id, position)
    );
    CREATE INDEX contents_turn ON contents(turn_id);
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        mime_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE TABLE turns (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL,
        thread_id BIGINT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        author_id TEXT NOT NULL,
        author_name TEXT NOT NULL,
        prompt TEXT NOT NULL,
        options TEXT NOT NULL,
        refs TEXT NOT NULL,
        reply TEXT NOT NULL,
        platform_refs TEXT NOT NULL DEFAULT '{}',
        deleted INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX turns_thread ON turns(thread_id, created_at, seq);
    CREATE TABLE usage (
        id BIGSERIAL PRIMARY KEY,
        turn_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        author_id TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        thought_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL,
        images INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX usage_when ON usage(created_at);
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        seen_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE thread_line (
        ticket BIGSERIAL PRIMARY KEY,
        line TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX thread_line_line ON thread_line(line, ticket);
    CREATE INDEX thread_line_holder ON thread_line(holder);
    CREATE TABLE installations (
        platform TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (platform, key)
    );
    CREATE TABLE oauth_states (
        state TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 2: team controls and 3: batch jobs, their SQLite schema with PostgreSQL's types
    postgres_ddl(TEAM_SCHEMA),
    postgres_ddl(BATCH_SCHEMA),
    # 4: variations
    postgres_ddl(VARIATIONS_SCHEMA),
    # 5: Gemini Files API records per blob, and which blobs each turn's history uses
    _files_schema,
    # 6: a thread-line ticket carries its turn's request (a live worker takes orphans over)
    postgres_ddl(LINE_REQUEST_SCHEMA),
)
SCHEMA_VERSION = len(MIGRATIONS)

_TURN_SELECT = ("SELECT u.*, t.platform, t.workspace, t.channel, t.thread FROM turns u "
                "JOIN threads t ON t.id = u.thread_id")
_KEY_WHERE = "platform=$1 AND workspace=$2 AND channel=$3 AND thread=$4"
_THREADS_SQL = ("SELECT t.*, (SELECT COUNT(*) FROM turns u WHERE u.thread_id=t.id AND "
                "u.deleted=0) AS n FROM threads t")


def search_path_of(url: str) -> str | None:
    """The first schema of a URL's ``search_path`` parameter (asyncpg passes it on)."""
    values = parse_qs(urlsplit(url).query).get("search_path")
    return values[0].split(",")[0].strip() if values else None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _key(key: ThreadKey) -> tuple[str, str, str, str]:
    return (key.platform, key.workspace, key.channel, key.thread)


class PgHistoryStore:
    """Async PostgreSQL store. Use ``await PgHistoryStore.open(url)`` and ``await close()``."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self.pool = pool
        self.url = url
        #: For the modules that keep their own tables on the store (ledger, audit, batches).
        self.db = PgConnection(pool)
        #: Files API records and blob uses (see :mod:`bot.store_files`).
        self.files = store_files.FileRecords(self.db, asyncio.Lock())

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A write transaction for tables other modules own; one writer at a time."""
        return self.db.transaction()

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.db.transaction()

    async def write_blobs(self, blobs: history.Blobs) -> None:
        """Stores blobs by hash (those already stored are skipped)."""
        await self._write_blobs(blobs)

    @classmethod
    async def open(cls, url: str, *, max_connections: int = 10,
                   synchronous_commit: str | None = None) -> PgHistoryStore:
        """Connects, creates the URL's ``search_path`` schema if missing, and migrates.

        Args:
            url: ``postgresql://…``; its query parameters other than asyncpg's own are
                server settings for every connection (``?synchronous_commit=off``).
            max_connections: the pool's size.
            synchronous_commit: the server setting for this imagebot's connections. By
                default the server's own (normally ``on``: a commit returns once it is on
                disk, so a committed turn survives a crash of the database server);
                ``off`` returns before the flush, as SQLite's WAL with ``synchronous=NORMAL``
                does: never half a turn, but a crash can lose the last fraction of a second
                of commits.
        """
        schema = search_path_of(url)
        if schema:
            conn = await asyncpg.connect(url.split("?")[0])
            try:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
                # Another worker starting at the same moment made it (not race-free).
                logger.debug("schema %s was created by another process", schema)
            finally:
                await conn.close()
        settings = {"synchronous_commit": synchronous_commit} if synchronous_commit else {}
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_connections,
                                         server_settings=settings)
        store = cls(pool, url)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self.pool.close()

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('imagebot:migrate'))")
            await conn.execute("CREATE TABLE IF NOT EXISTS imagebot_schema (version INTEGER "
                               "NOT NULL)")
            version = await conn.fetchval("SELECT MAX(version) FROM imagebot_schema") or 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the PostgreSQL database has schema {version}, newer than this imagebot "
                    f"({SCHEMA_VERSION}); upgrade imagebot")
            for number in range(version + 1, SCHEMA_VERSION + 1):
                logger.info("migrating the PostgreSQL database to schema %d", number)
                step = MIGRATIONS[number - 1]
                if isinstance(step, str):
                    await conn.execute(step)
                else:
                    await step(self.db.bound(conn))
                await conn.execute("INSERT INTO imagebot_schema (version) VALUES ($1)", number)

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT MAX(version) FROM imagebot_schema") or 0)

    async def writable(self) -> bool:
        try:
            return bool(await self.pool.fetchval(
                "SELECT NOT pg_is_in_recovery() AND "
                "current_setting('transaction_read_only') = 'off'"))
        except Exception:  # reported through /healthz, not raised
            return False

    # --- threads -----------------------------------------------------------------------

    async def thread_exists(self, key: ThreadKey) -> bool:
        return await self.pool.fetchval(f"SELECT 1 FROM threads WHERE {_KEY_WHERE}",
                                        *_key(key)) is not None

    async def settings(self, key: ThreadKey) -> OptionInput:
        text = await self.pool.fetchval(f"SELECT settings FROM threads WHERE {_KEY_WHERE}",
                                        *_key(key))
        return OptionInput.from_dict(json.loads(text)) if text else OptionInput()

    async def save_settings(self, key: ThreadKey, settings: OptionInput) -> None:
        async with self.pool.acquire() as conn:
            await _upsert_thread(conn, key, settings, title="")

    async def list_threads(self, platform: str | None = None) -> list[ThreadSummary]:
        if platform:
            rows = await self.pool.fetch(_THREADS_SQL + " WHERE t.platform=$1 "
                                         "ORDER BY t.updated_at DESC", platform)
        else:
            rows = await self.pool.fetch(_THREADS_SQL + " ORDER BY t.updated_at DESC")
        return [summary_row(r) for r in rows]

    async def find_thread(self, key: ThreadKey) -> ThreadSummary | None:
        row = await self.pool.fetchrow(
            _THREADS_SQL + " WHERE t.platform=$1 AND t.workspace=$2 AND t.channel=$3 "
            "AND t.thread=$4", *_key(key))
        return summary_row(row) if row else None

    async def delete_thread(self, key: ThreadKey) -> bool:
        """Removes a thread with its history and turn records, and the blobs no other
        thread uses."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({_BLOBS_LOCK})")
            thread_id = await conn.fetchval(f"SELECT id FROM threads WHERE {_KEY_WHERE}",
                                            *_key(key))
            if thread_id is None:
                return False
            db = self.db.bound(conn)
            hashes = await store_files.thread_blobs(db, thread_id)
            await conn.execute("DELETE FROM threads WHERE id=$1", thread_id)
            freed = await store_files.delete_unused_blobs(db, hashes)
        logger.info("thread %s deleted with %d blob(s) nothing else uses", key, freed)
        return True

    async def rename_thread(self, key: ThreadKey, title: str) -> bool:
        status = await self.pool.execute(
            "UPDATE threads SET title=$5 WHERE " + _KEY_WHERE, *_key(key), title)
        return _count(status) > 0

    # --- history -----------------------------------------------------------------------

    async def load_history(self, key: ThreadKey) -> list[types.Content]:
        return await self.inflate(await self.load_stored(key))

    async def load_stored(self, key: ThreadKey) -> list[StoredContent]:
        rows = await self.pool.fetch(
            "SELECT c.turn_id, c.role, c.content FROM contents c JOIN threads t "
            "ON t.id = c.thread_id WHERE t.platform=$1 AND t.workspace=$2 AND t.channel=$3 "
            "AND t.thread=$4 ORDER BY c.position", *_key(key))
        return [history.parse_row(r[0], r[1], r[2]) for r in rows]

    async def inflate(self, stored: Sequence[StoredContent],
                      files: Mapping[str, str] | None = None) -> list[types.Content]:
        files = files or {}
        hashes = {h for item in stored for h in item.blob_hashes() if h not in files}
        blobs = await self.get_blobs(hashes)
        return await asyncio.to_thread(history.inflate, stored, blobs, files)

    async def blob_sizes(self, hashes: set[str] | list[str]) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT sha256, size FROM blobs WHERE sha256 = ANY($1)",
                                     list(hashes))
        return {r[0]: int(r[1]) for r in rows}

    async def get_blobs(self, hashes: set[str] | list[str]) -> dict[str, bytes]:
        wanted = list(hashes)
        rows = await self.pool.fetch("SELECT sha256, data FROM blobs WHERE sha256 = ANY($1)",
                                     wanted)
        found = {r[0]: bytes(r[1]) for r in rows}
        missing = set(wanted) - set(found)
        if missing:
            raise NotFoundError(f"{len(missing)} image(s) are missing from imagebot's store.")
        return found

    async def commit_turn(self, turn: NewTurn) -> None:
        """Blobs first (each once, outside the transaction), then the turn's rows at once."""
        rows, blobs = await asyncio.to_thread(history.deflate, turn.contents,
                                              turn.known_hashes)
        await self._write_blobs({**turn.blobs, **blobs})
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock_shared({_BLOBS_LOCK})")
            thread_id = await _upsert_thread(conn, turn.key, turn.settings,
                                             title=turn.prompt[:80])
            start = await conn.fetchval(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM contents WHERE thread_id=$1",
                thread_id)
            db = self.db.bound(conn)
            await store_files.restore_missing_blobs(db, blobs)
            await store_files.add_uses(db, thread_id, turn.turn_id, blobs)
            await conn.executemany(
                "INSERT INTO contents (thread_id, turn_id, position, role, content) "
                "VALUES ($1,$2,$3,$4,$5)",
                [(thread_id, turn.turn_id, start + i, role, text)
                 for i, (role, text) in enumerate(rows)])
            await conn.execute(
                "INSERT INTO turns (id, thread_id, author_id, author_name, prompt, options, "
                "refs, reply, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                turn.turn_id, thread_id, turn.author_id, turn.author_name, turn.prompt,
                json.dumps(turn.options), json.dumps([r.__dict__ for r in turn.refs]),
                json.dumps(turn.reply.to_dict()), turn.created_at)
            u = turn.usage
            await conn.execute(
                "INSERT INTO usage (turn_id, platform, workspace, channel, thread, author_id, "
                "model, prompt_tokens, output_tokens, thought_tokens, total_tokens, images, "
                "created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                turn.turn_id, *_key(turn.key), turn.author_id, turn.model,
                u.get("prompt_tokens", 0), u.get("output_tokens", 0),
                u.get("thought_tokens", 0), u.get("total_tokens", 0), turn.images,
                turn.created_at)
            if turn.also is not None:
                await turn.also(self.db.bound(conn))

    async def _write_blobs(self, blobs: history.Blobs) -> None:
        """Writes the blobs not stored yet, in one transaction that does not wait for the
        disk: whatever commit names them later (the turn's) flushes the log up to and past
        them, so they are exactly as durable as that commit, one disk flush sooner."""
        stored = await self.blob_sizes(list(blobs))
        new = [(digest, mime, len(data), data) for digest, (mime, data) in blobs.items()
               if digest not in stored]
        if not new:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit TO OFF")
            await conn.executemany(
                "INSERT INTO blobs (sha256, mime_type, size, data) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT (sha256) DO NOTHING", new)

    # --- turn records --------------------------------------------------------------------

    async def get_turn(self, turn_id: str) -> TurnView | None:
        row = await self.pool.fetchrow(_TURN_SELECT + " WHERE u.id=$1", turn_id)
        return turn_row(row) if row else None

    async def list_turns(self, key: ThreadKey, *, include_deleted: bool = False
                         ) -> list[TurnView]:
        sql = (_TURN_SELECT + " WHERE t.platform=$1 AND t.workspace=$2 AND t.channel=$3 "
               "AND t.thread=$4")
        if not include_deleted:
            sql += " AND u.deleted=0"
        rows = await self.pool.fetch(sql + " ORDER BY u.created_at, u.seq", *_key(key))
        return [turn_row(r) for r in rows]

    async def set_platform_refs(self, turn_id: str, refs: dict[str, Any]) -> None:
        await self.pool.execute("UPDATE turns SET platform_refs=$2 WHERE id=$1", turn_id,
                                json.dumps(refs))

    async def delete_turn(self, turn_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE turns SET deleted=1 WHERE id=$1 AND deleted=0", turn_id)
            await conn.execute("DELETE FROM contents WHERE turn_id=$1", turn_id)
            await conn.execute("DELETE FROM blob_uses WHERE turn_id=$1", turn_id)
        return _count(status) > 0

    # --- events and usage ----------------------------------------------------------------

    async def mark_event(self, event_id: str) -> bool:
        return await self.pool.fetchval(
            "INSERT INTO events (event_id, seen_at) VALUES ($1, $2) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING 1", event_id, time.time()) is not None

    async def prune_events(self, older_than: float) -> None:
        await self.pool.execute("DELETE FROM events WHERE seen_at < $1",
                                time.time() - older_than)

    async def usage_rows(self, key: ThreadKey | None = None) -> list[dict[str, Any]]:
        if key:
            rows = await self.pool.fetch(f"SELECT * FROM usage WHERE {_KEY_WHERE} ORDER BY id",
                                         *_key(key))
        else:
            rows = await self.pool.fetch("SELECT * FROM usage ORDER BY id")
        return [dict(r) for r in rows]

    # --- thread lines --------------------------------------------------------------------

    async def line_join(self, line: str, holder: str, ttl: float,
                        request: str | None = None) -> int:
        return int(await self.pool.fetchval(
            "INSERT INTO thread_line (line, holder, expires_at, request, ttl, joined_at) "
            f"VALUES ($1, $2, {_NOW} + $3, $4, $3, {_NOW}) RETURNING ticket",
            line, holder, ttl, request))

    async def line_first(self, line: str, ticket: int) -> bool | None:
        rows = await self.pool.fetch(
            f"WITH gone AS (DELETE FROM thread_line WHERE line=$1 AND {_GONE}) "
            f"SELECT ticket FROM thread_line WHERE line=$1 AND ticket<=$2 "
            f"AND NOT ({_GONE}) ORDER BY ticket LIMIT 2", line, ticket)
        tickets = [int(r[0]) for r in rows]
        if ticket not in tickets:
            return None
        return tickets[0] == ticket

    async def line_renew(self, holder: str, ttl: float) -> None:
        await self.pool.execute(
            f"UPDATE thread_line SET expires_at = {_NOW} + $2 WHERE holder=$1", holder, ttl)

    async def line_leave(self, ticket: int) -> None:
        await self.pool.execute("DELETE FROM thread_line WHERE ticket=$1", ticket)

    async def line_busy(self, line: str) -> bool:
        return await self.pool.fetchval(
            f"SELECT 1 FROM thread_line WHERE line=$1 AND NOT ({_GONE}) LIMIT 1",
            line) is not None

    async def line_orphans(self, max_adoptions: int, limit: int = 50) -> list[Orphan]:
        rows = await self.pool.fetch(
            "SELECT ticket, line, request, joined_at, adoptions, holder FROM thread_line "
            f"WHERE request IS NOT NULL AND expires_at < {_NOW} "
            f"AND expires_at + ttl >= {_NOW} AND adoptions < $1 ORDER BY ticket LIMIT $2",
            max_adoptions, limit)
        return [Orphan(int(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), str(r[5]))
                for r in rows]

    async def line_adopt(self, ticket: int, holder: str, ttl: float) -> bool:
        # The WHERE is checked again on the locked row: of two racing updates, the second
        # sees the first one's new expiry and changes nothing.
        done = await self.pool.execute(
            f"UPDATE thread_line SET holder=$2, expires_at={_NOW} + $3, "
            f"adoptions=adoptions+1 WHERE ticket=$1 AND expires_at < {_NOW}",
            ticket, holder, ttl)
        return str(done).endswith(" 1")

    # --- installations and OAuth states ----------------------------------------------------

    async def save_installation(self, platform: str, key: str, data: Mapping[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO installations (platform, key, data, updated_at) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT (platform, key) DO UPDATE SET data=EXCLUDED.data, "
            "updated_at=EXCLUDED.updated_at",
            platform, key, json.dumps(dict(data), sort_keys=True), time.time())

    async def find_installation(self, platform: str, key: str) -> dict[str, Any] | None:
        text = await self.pool.fetchval(
            "SELECT data FROM installations WHERE platform=$1 AND key=$2", platform, key)
        return json.loads(text) if text else None

    async def delete_installation(self, platform: str, key: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM installations WHERE platform=$1 AND key=$2", platform, key)
        return _count(status) > 0

    async def issue_state(self, state: str, expires_at: float) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM oauth_states WHERE expires_at < $1", time.time())
            await conn.execute("INSERT INTO oauth_states (state, expires_at) VALUES ($1,$2)",
                               state, expires_at)

    async def consume_state(self, state: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM oauth_states WHERE state=$1 AND expires_at >= $2", state, time.time())
        return _count(status) > 0


async def _upsert_thread(conn: asyncpg.Connection, key: ThreadKey, settings: OptionInput,
                         title: str) -> int:
    now = time.time()
    return int(await conn.fetchval(
        "INSERT INTO threads (platform, workspace, channel, thread, title, settings, "
        "created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$7) "
        "ON CONFLICT (platform, workspace, channel, thread) DO UPDATE SET "
        "settings=EXCLUDED.settings, updated_at=EXCLUDED.updated_at, "
        "title=CASE WHEN threads.title='' THEN EXCLUDED.title ELSE threads.title END "
        "RETURNING id", *_key(key), title, json.dumps(settings.given(), sort_keys=True), now))


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``DELETE 1`` or ``UPDATE 0``."""
    return int(status.rsplit(" ", 1)[-1])
