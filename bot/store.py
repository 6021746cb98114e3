"""SQLite persistence (aiosqlite): threads and their settings, history Contents, image blobs,
turn records for buttons, a usage ledger and processed event ids.

History rows hold each Content as JSON with image bytes and large thought signatures
replaced by the hash of a row in ``blobs`` (see :mod:`bot.history`), so rows stay small and
bytes are stored once. A turn's new blobs are written first, in one short transaction, and
its rows then in another (one trip to the database thread): a failure or a crash leaves
the thread as it was (at worst with unreferenced blobs, which are harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from bot import history, store_files
from bot.errors import ConfigError, NotFoundError
from bot.history import StoredContent
from bot.model import ThreadKey, ThreadSummary, TurnView
from bot.options import OptionInput
from bot.store_api import NewTurn, summary_row, turn_row
from bot.store_sqlite_scale import LINE_REQUEST_SCHEMA, SCALE_SCHEMA, SqliteScaleMixin
from bot.tables import BATCH_SCHEMA, TEAM_SCHEMA, VARIATIONS_SCHEMA

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "HistoryStore", "NewTurn"]

if TYPE_CHECKING:  # google.genai costs ~0.6 s to import; `imagebot threads` never needs it
    from google.genai import types

logger = logging.getLogger(__name__)

Migration = str | Callable[[aiosqlite.Connection], Awaitable[None]]


async def _signatures_to_blobs(db: aiosqlite.Connection) -> None:
    """Schema 2: large thought signatures move out of history rows into blobs."""
    async with db.execute("SELECT id, content FROM contents ORDER BY id") as cur:
        rows = await cur.fetchall()
    for row_id, text in rows:
        moved = history.migrate_row(text)
        if moved is None:
            continue
        new_text, blobs = moved
        await db.executemany(
            "INSERT OR IGNORE INTO blobs (sha256, mime_type, size, data) VALUES (?,?,?,?)",
            [(h, mime, len(data), data) for h, (mime, data) in blobs.items()])
        await db.execute("UPDATE contents SET content=? WHERE id=?", (new_text, row_id))


MIGRATIONS: tuple[Migration, ...] = (
    # 1: initial schema
    """
    CREATE TABLE threads (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (platform, workspace, channel, thread)
    );
    CREATE TABLE contents (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
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
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE turns (
        id TEXT PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        author_id TEXT NOT NULL,
        author_name TEXT NOT NULL,
        prompt TEXT NOT NULL,
        options TEXT NOT NULL,
        refs TEXT NOT NULL,
        reply TEXT NOT NULL,
        platform_refs TEXT NOT NULL DEFAULT '{}',
        deleted INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX turns_thread ON turns(thread_id, created_at);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        turn_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        author_id TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        thought_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        images INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX usage_when ON usage(created_at);
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    """,
    # 2: thought signatures over 1 KiB become blobs
    _signatures_to_blobs,
    # 3: thread lines, installations and OAuth states (several processes on one database)
    SCALE_SCHEMA,
    # 4: team controls: the cost ledger (quota reservations), run-time policy, the audit log
    TEAM_SCHEMA,
    # 5: Batch API jobs (bot.batch_store): stored before they are created at Gemini
    BATCH_SCHEMA,
    # 6: variations (bot.variations): every candidate's model Content, for Use
    VARIATIONS_SCHEMA,
    # 7: Gemini Files API records per blob, and which blobs each turn's history uses
    store_files.migrate,
    # 8: a thread-line ticket carries its turn's request (a live worker takes orphans over)
    LINE_REQUEST_SCHEMA,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How long a write waits for another process's writer before giving up (seconds).
BUSY_WAIT = 30.0
#: The page size of a new database. Most of its bytes are ~1 MB images and signatures:
#: with SQLite's default 4 KiB pages each is a chain of ~250 overflow pages, each a frame
#: of its own in the WAL, and a turn's blobs (~5 MB at 1K) took ~30 ms to write instead
#: of ~4 ms; the larger pages cost the small rows far less than that.
PAGE_SIZE = 65536


class HistoryStore(SqliteScaleMixin):
    """Async SQLite store. Use ``await HistoryStore.open(path)`` and ``await store.close()``."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._write_lock = asyncio.Lock()
        #: Files API records and blob uses (see :mod:`bot.store_files`).
        self.files = store_files.FileRecords(db, self._write_lock)

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> HistoryStore:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        db.row_factory = aiosqlite.Row
        store = cls(db, path)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # Only a new, empty database takes it (before its first table); an existing
            # one keeps the page size it was made with.
            await db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    async def _migrate(self) -> None:
        row = await self._one("PRAGMA user_version")
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"database {self.path} has schema {version}, newer than this imagebot "
                f"({SCHEMA_VERSION}); upgrade imagebot")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            logger.info("migrating %s to schema %d", self.path, number)
            step = MIGRATIONS[number - 1]
            if isinstance(step, str):
                await self.db.executescript(
                    "BEGIN IMMEDIATE;\n" + step + f"\nPRAGMA user_version = {number};\nCOMMIT;")
                continue
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                await step(self.db)
                await self.db.execute(f"PRAGMA user_version = {number}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        row = await self._one("PRAGMA user_version")
        return int(row[0]) if row else 0

    # --- threads -----------------------------------------------------------------------

    async def _thread_id(self, key: ThreadKey) -> int | None:
        row = await self._one(
            "SELECT id FROM threads WHERE platform=? AND workspace=? AND channel=? AND thread=?",
            (key.platform, key.workspace, key.channel, key.thread),
        )
        return int(row[0]) if row else None

    async def thread_exists(self, key: ThreadKey) -> bool:
        return await self._thread_id(key) is not None

    async def settings(self, key: ThreadKey) -> OptionInput:
        """The thread's sticky settings (empty for a new thread)."""
        row = await self._one(
            "SELECT settings FROM threads WHERE platform=? AND workspace=? AND channel=? "
            "AND thread=?", (key.platform, key.workspace, key.channel, key.thread),
        )
        return OptionInput.from_dict(json.loads(row[0])) if row else OptionInput()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One write transaction at a time; rolled back on any error or cancellation."""
        async with self._write_lock:
            await self._begin()
            try:
                yield
                await self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    # A cancelled COMMIT still runs in aiosqlite's thread: the transaction
                    # may be over by the time this ROLLBACK runs. The cancellation (or the
                    # first error) is what must propagate, not "no transaction is active".
                    with contextlib.suppress(sqlite3.OperationalError):
                        await self.db.execute("ROLLBACK")
                raise

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting out another process's writer. SQLite's busy timeout
        covers most of that wait, but in WAL mode it can answer "database is locked" at once
        (a read snapshot another connection's commit made stale), so that is retried here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_WAIT
        delay = 0.01
        while True:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def save_settings(self, key: ThreadKey, settings: OptionInput) -> None:
        """Stores settings without a turn (a settings command, the web selectors)."""
        async with self._transaction():
            await self._upsert_thread(key, settings, title="")

    async def _upsert_thread(self, key: ThreadKey, settings: OptionInput, title: str) -> int:
        now = time.time()
        rows = await self.db.execute_fetchall(
            _UPSERT_THREAD,
            (key.platform, key.workspace, key.channel, key.thread, title,
             json.dumps(settings.given(), sort_keys=True), now, now),
        )
        return int(next(iter(rows))[0])

    async def list_threads(self, platform: str | None = None) -> list[ThreadSummary]:
        sql = _THREADS_SQL
        args: tuple[Any, ...] = ()
        if platform:
            sql += " WHERE t.platform=?"
            args = (platform,)
        sql += " ORDER BY t.updated_at DESC"
        rows = await self.db.execute_fetchall(sql, args)
        return [summary_row(r) for r in rows]

    async def find_thread(self, key: ThreadKey) -> ThreadSummary | None:
        """One thread's summary, looked up by its key (not by listing them all)."""
        row = await self._one(
            _THREADS_SQL + " WHERE t.platform=? AND t.workspace=? AND t.channel=? "
            "AND t.thread=?", (key.platform, key.workspace, key.channel, key.thread))
        return summary_row(row) if row else None

    async def delete_thread(self, key: ThreadKey) -> bool:
        """Removes a thread with its history and turn records, and the blobs no other
        thread uses."""
        async with self._transaction():
            thread_id = await self._thread_id(key)
            if thread_id is None:
                return False
            hashes = await store_files.thread_blobs(self.db, thread_id)
            await self.db.execute("DELETE FROM threads WHERE id=?", (thread_id,))
            freed = await store_files.delete_unused_blobs(self.db, hashes)
        logger.info("thread %s deleted with %d blob(s) nothing else uses", key, freed)
        return True

    async def rename_thread(self, key: ThreadKey, title: str) -> bool:
        async with self._transaction():
            cur = await self.db.execute(
                "UPDATE threads SET title=? WHERE platform=? AND workspace=? AND channel=? "
                "AND thread=?", (title, key.platform, key.workspace, key.channel, key.thread))
            return cur.rowcount > 0

    # --- history -----------------------------------------------------------------------

    async def load_history(self, key: ThreadKey) -> list[types.Content]:
        """The thread's Contents in order, with image bytes and signatures restored."""
        return await self.inflate(await self.load_stored(key))

    async def load_stored(self, key: ThreadKey) -> list[StoredContent]:
        """The thread's Contents as stored: small rows naming blobs, no blob read."""
        rows = await self.db.execute_fetchall(
            "SELECT c.turn_id, c.role, c.content FROM contents c JOIN threads t "
            "ON t.id = c.thread_id WHERE t.platform=? AND t.workspace=? AND t.channel=? "
            "AND t.thread=? ORDER BY c.position",
            (key.platform, key.workspace, key.channel, key.thread))
        return [history.parse_row(r[0], r[1], r[2]) for r in rows]

    async def inflate(self, stored: Sequence[StoredContent],
                      files: Mapping[str, str] | None = None) -> list[types.Content]:
        """SDK Contents for stored ones, reading only the blobs they name; images in
        ``files`` (hash to file URI) become Files API references and are not read."""
        files = files or {}
        hashes = {h for item in stored for h in item.blob_hashes() if h not in files}
        blobs = await self.get_blobs(hashes)
        return await asyncio.to_thread(history.inflate, stored, blobs, files)

    async def blob_sizes(self, hashes: set[str] | list[str]) -> dict[str, int]:
        """Byte sizes of blobs, without reading them."""
        return {h: size for h, (_, size) in (await self._blob_meta(hashes)).items()}

    async def _blob_meta(self, hashes: set[str] | list[str]) -> dict[str, tuple[str, int]]:
        wanted = list(hashes)
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.execute_fetchall(
                f"SELECT sha256, mime_type, size FROM blobs WHERE sha256 IN ({marks})", chunk)
            found.update({r[0]: (r[1], int(r[2])) for r in rows})
        return found

    async def get_blobs(self, hashes: set[str] | list[str]) -> dict[str, bytes]:
        wanted = list(hashes)
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.execute_fetchall(
                f"SELECT sha256, data FROM blobs WHERE sha256 IN ({marks})", chunk)
            # sqlite3 hands BLOB columns out as bytes already: no copy needed.
            found.update({r[0]: r[1] for r in rows})
        missing = set(wanted) - set(found)
        if missing:
            raise NotFoundError(f"{len(missing)} image(s) are missing from imagebot's store.")
        return found

    async def commit_turn(self, turn: NewTurn) -> None:
        """Writes a whole turn: blobs first, then thread, contents, record and usage at once.

        Rows are built and blobs hashed outside the write lock; blobs already stored are not
        written again, the new ones go in one short transaction of their own, so concurrent
        turns interleave instead of queueing whole turns behind one long transaction. The
        rows' statements run in ONE trip to the database thread: each trip waits for the
        event loop, which a hundred answers being parsed at once keep busy, and the write
        lock was held across every one of them.
        """
        rows, blobs = await asyncio.to_thread(history.deflate, turn.contents,
                                              turn.known_hashes)
        await self._write_blobs({**turn.blobs, **blobs})
        json_columns = (json.dumps(turn.options), json.dumps([r.__dict__ for r in turn.refs]),
                        json.dumps(turn.reply.to_dict()),
                        json.dumps(turn.settings.given(), sort_keys=True))
        async with self._transaction():
            # aiosqlite (pinned in constraints.txt) has no public call for "run this on the
            # connection's thread"; _execute is what its own methods use.
            await self.db._execute(_turn_rows, self.db._conn, turn, rows, blobs, json_columns)
            if turn.also is not None:
                await turn.also(self.db)

    async def _write_blobs(self, blobs: history.Blobs) -> None:
        """Stores the blobs not stored yet, all in one statement."""
        if not blobs:
            return
        stored = await self._blob_meta(list(blobs))
        new = [(digest, mime, len(data), data) for digest, (mime, data) in blobs.items()
               if digest not in stored]
        if not new:
            return
        async with self._transaction():
            await self.db.executemany(
                "INSERT OR IGNORE INTO blobs (sha256, mime_type, size, data) VALUES (?,?,?,?)",
                new)

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a query, in one trip to the database thread."""
        return next(iter(await self.db.execute_fetchall(sql, args)), None)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A write transaction on this store's connection, for tables other modules own
        (batch jobs): one writer at a time, rolled back on any error."""
        return self._transaction()

    async def write_blobs(self, blobs: history.Blobs) -> None:
        """Stores blobs by hash (those already stored are skipped)."""
        await self._write_blobs(blobs)

    # --- turn records --------------------------------------------------------------------

    async def get_turn(self, turn_id: str) -> TurnView | None:
        row = await self._one(
            "SELECT u.*, t.platform, t.workspace, t.channel, t.thread FROM turns u "
            "JOIN threads t ON t.id = u.thread_id WHERE u.id=?", (turn_id,))
        return turn_row(row) if row else None

    async def list_turns(self, key: ThreadKey, *, include_deleted: bool = False
                         ) -> list[TurnView]:
        sql = ("SELECT u.*, t.platform, t.workspace, t.channel, t.thread FROM turns u "
               "JOIN threads t ON t.id = u.thread_id WHERE t.platform=? AND t.workspace=? "
               "AND t.channel=? AND t.thread=?")
        if not include_deleted:
            sql += " AND u.deleted=0"
        rows = await self.db.execute_fetchall(
            sql + " ORDER BY u.created_at, u.rowid",
            (key.platform, key.workspace, key.channel, key.thread))
        return [turn_row(r) for r in rows]

    async def set_platform_refs(self, turn_id: str, refs: dict[str, Any]) -> None:
        """Records where an adapter posted a turn's result (message ids), for Delete."""
        async with self._transaction():
            await self.db.execute("UPDATE turns SET platform_refs=? WHERE id=?",
                                  (json.dumps(refs), turn_id))

    async def delete_turn(self, turn_id: str) -> bool:
        """Marks a turn deleted and removes its Contents from the thread's history."""
        async with self._transaction():
            cur = await self.db.execute(
                "UPDATE turns SET deleted=1 WHERE id=? AND deleted=0", (turn_id,))
            changed = cur.rowcount > 0
            await self.db.execute("DELETE FROM contents WHERE turn_id=?", (turn_id,))
            await self.db.execute("DELETE FROM blob_uses WHERE turn_id=?", (turn_id,))
        return changed

    # --- events and usage ----------------------------------------------------------------

    async def mark_event(self, event_id: str) -> bool:
        """Records a platform event id; False if it was seen before (a duplicate delivery)."""
        async with self._transaction():
            cur = await self.db.execute(
                "INSERT OR IGNORE INTO events (event_id, seen_at) VALUES (?, ?)",
                (event_id, time.time()))
            return cur.rowcount > 0

    async def prune_events(self, older_than: float) -> None:
        async with self._transaction():
            await self.db.execute("DELETE FROM events WHERE seen_at < ?",
                                  (time.time() - older_than,))

    async def usage_rows(self, key: ThreadKey | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM usage", ()
        if key:
            sql += " WHERE platform=? AND workspace=? AND channel=? AND thread=?"
            args = (key.platform, key.workspace, key.channel, key.thread)  # type: ignore[assignment]
        return [dict(r) for r in await self.db.execute_fetchall(sql + " ORDER BY id", args)]

    async def writable(self) -> bool:
        """A health check: can the database take a write now?"""
        try:
            async with self._write_lock:
                await self.db.execute("BEGIN IMMEDIATE")
                await self.db.execute("ROLLBACK")
            return True
        except Exception:  # reported through /healthz, not raised
            return False


#: A thread's row made or updated (settings, time; the first title stays), its id returned.
_UPSERT_THREAD = (
    "INSERT INTO threads (platform, workspace, channel, thread, title, settings, "
    "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?) "
    "ON CONFLICT (platform, workspace, channel, thread) DO UPDATE SET "
    "settings=excluded.settings, updated_at=excluded.updated_at, "
    "title=CASE WHEN threads.title='' THEN excluded.title ELSE threads.title END "
    "RETURNING id")
_THREADS_SQL = ("SELECT t.*, (SELECT COUNT(*) FROM turns u WHERE u.thread_id=t.id AND "
                "u.deleted=0) AS n FROM threads t")


def _turn_rows(db: sqlite3.Connection, turn: NewTurn, rows: list[tuple[str, str]],
               blobs: history.Blobs, json_columns: tuple[str, str, str, str]) -> None:
    """A turn's rows, inside its transaction, on the connection's own thread."""
    options, refs, reply, settings = json_columns
    key, now, stamp = turn.key, turn.created_at, time.time()
    thread_id = int(db.execute(_UPSERT_THREAD, (
        key.platform, key.workspace, key.channel, key.thread, turn.prompt[:80], settings,
        stamp, stamp)).fetchone()[0])
    store_files.restore_missing_blobs_now(db, blobs)
    store_files.add_uses_now(db, thread_id, turn.turn_id, blobs)
    # Each row goes after the thread's last one: executemany inserts them in order.
    db.executemany(
        "INSERT INTO contents (thread_id, turn_id, position, role, content) "
        "VALUES (?1, ?2, (SELECT COALESCE(MAX(position), -1) + 1 FROM contents "
        "WHERE thread_id=?1), ?3, ?4)",
        [(thread_id, turn.turn_id, role, text) for role, text in rows])
    db.execute(
        "INSERT INTO turns (id, thread_id, author_id, author_name, prompt, options, "
        "refs, reply, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (turn.turn_id, thread_id, turn.author_id, turn.author_name, turn.prompt, options,
         refs, reply, now))
    u = turn.usage
    db.execute(
        "INSERT INTO usage (turn_id, platform, workspace, channel, thread, author_id, "
        "model, prompt_tokens, output_tokens, thought_tokens, total_tokens, images, "
        "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (turn.turn_id, key.platform, key.workspace, key.channel, key.thread,
         turn.author_id, turn.model, u.get("prompt_tokens", 0), u.get("output_tokens", 0),
         u.get("thought_tokens", 0), u.get("total_tokens", 0), turn.images, now))
