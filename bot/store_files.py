"""The store's side of the Files API: which Gemini file holds each blob, and which blobs a
thread's history still uses (so files and blobs nothing uses can be deleted).

The same functions run on both stores: on PostgreSQL ``db`` is
:class:`bot.pg_compat.PgConnection` (``?`` placeholders, the SQL below is valid in both),
and :data:`SCHEMA` becomes PostgreSQL's types there (a :mod:`bot.store_pg` migration).

Files are recorded per *namespace* (one Gemini endpoint and API key): a file uploaded for
one project cannot be read with another key. ``blob_uses`` lists, for each turn still in a
history, the blobs its Contents name; deleting a turn removes its uses, deleting a thread
removes all of them (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from bot import history
from bot.model import ThreadKey

#: The store's connection: ``aiosqlite.Connection``, or ``bot.pg_compat.PgConnection``.
Db = Any

#: Schema 3's tables (created by :func:`migrate`).
SCHEMA = """
CREATE TABLE gemini_files (
    namespace TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (namespace, sha256)
);
CREATE INDEX gemini_files_expiry ON gemini_files(expires_at);
CREATE TABLE blob_uses (
    sha256 TEXT NOT NULL,
    thread_id INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL,
    PRIMARY KEY (sha256, thread_id, turn_id)
) WITHOUT ROWID;
CREATE INDEX blob_uses_thread ON blob_uses(thread_id);
CREATE INDEX blob_uses_turn ON blob_uses(turn_id);
"""

_CHUNK = 500


@dataclass(frozen=True)
class FileRecord:
    """A blob's copy on Gemini's Files API.

    Attributes:
        sha256: the blob.
        name: the file's resource name (``files/abc123``), for deleting it.
        uri: the full URI requests name it by (``https://…/v1beta/files/abc123``).
        mime_type: the MIME type it was uploaded with.
        expires_at: when Gemini forgets it, in this machine's ``time.time()``.
    """

    sha256: str
    name: str
    uri: str
    mime_type: str
    expires_at: float


async def migrate(db: Db) -> None:
    """SQLite's schema 7: the file records table, and the uses of every blob already
    stored."""
    await create_tables(db, SCHEMA)


async def create_tables(db: Db, schema: str) -> None:
    """Creates :data:`SCHEMA` (as ``schema``, in the database's types) and records the uses
    of every blob the stored histories already name."""
    for statement in schema.split(";"):
        if statement.strip():
            await db.execute(statement)
    async with db.execute(
            "SELECT c.thread_id, c.turn_id, c.role, c.content FROM contents c") as cur:
        rows = await cur.fetchall()
    # Rows by position: PostgreSQL's rows unpack as their column names.
    uses = {(h, r[0], r[1]) for r in rows
            for h in history.parse_row(r[1], r[2], r[3]).blob_hashes()}
    if uses:
        await db.executemany("INSERT INTO blob_uses (sha256, thread_id, turn_id) "
                             "VALUES (?,?,?) ON CONFLICT DO NOTHING", sorted(uses))


async def add_uses(db: Db, thread_id: int, turn_id: str,
                   hashes: Iterable[str]) -> None:
    """Records that a turn's Contents name these blobs (inside the turn's transaction)."""
    await db.executemany("INSERT INTO blob_uses (sha256, thread_id, turn_id) "
                         "VALUES (?,?,?) ON CONFLICT DO NOTHING",
                         [(h, thread_id, turn_id) for h in set(hashes)])


async def restore_missing_blobs(db: Db, blobs: history.Blobs) -> None:
    """Writes again, inside the turn's transaction, any of its blobs deleted since they
    were checked (a thread sharing them was deleted in between): rare, and then cheap."""
    present: set[str] = set()
    for chunk in _chunks(list(blobs)):
        async with db.execute(f"SELECT sha256 FROM blobs WHERE sha256 IN ({_marks(chunk)})",
                              chunk) as cur:
            present.update(r[0] for r in await cur.fetchall())
    missing = [(h, mime, len(data), data) for h, (mime, data) in blobs.items()
               if h not in present]
    if missing:
        await db.executemany("INSERT INTO blobs (sha256, mime_type, size, data) "
                             "VALUES (?,?,?,?) ON CONFLICT DO NOTHING", missing)


def add_uses_now(db: sqlite3.Connection, thread_id: int, turn_id: str,
                 hashes: Iterable[str]) -> None:
    """:func:`add_uses` on a plain SQLite connection, on its own thread (a SQLite turn's
    rows are written in one trip to the connection's thread)."""
    db.executemany("INSERT OR IGNORE INTO blob_uses (sha256, thread_id, turn_id) "
                   "VALUES (?,?,?)", [(h, thread_id, turn_id) for h in set(hashes)])


def restore_missing_blobs_now(db: sqlite3.Connection, blobs: history.Blobs) -> None:
    """:func:`restore_missing_blobs` on a plain SQLite connection, on its own thread."""
    present: set[str] = set()
    for chunk in _chunks(list(blobs)):
        rows = db.execute(f"SELECT sha256 FROM blobs WHERE sha256 IN ({_marks(chunk)})",
                          chunk).fetchall()
        present.update(r[0] for r in rows)
    missing = [(h, mime, len(data), data) for h, (mime, data) in blobs.items()
               if h not in present]
    if missing:
        db.executemany("INSERT OR IGNORE INTO blobs (sha256, mime_type, size, data) "
                       "VALUES (?,?,?,?)", missing)


async def thread_blobs(db: Db, thread_id: int) -> set[str]:
    """Every blob a thread names: in its history, and in its turn records (deleted turns'
    included: their images are still in the blobs table)."""
    async with db.execute("SELECT sha256 FROM blob_uses WHERE thread_id=?",
                          (thread_id,)) as cur:
        found = {r[0] for r in await cur.fetchall()}
    async with db.execute("SELECT refs, reply FROM turns WHERE thread_id=?",
                          (thread_id,)) as cur:
        for row in await cur.fetchall():
            found.update(r["sha256"] for r in json.loads(row[0]))
            stored = json.loads(row[1])
            found.update(p["sha256"] for p in (*stored.get("parts", ()),
                                                *stored.get("thoughts", ()))
                         if p.get("kind") == "image" and p.get("sha256"))
    return found


async def delete_unused_blobs(db: Db, hashes: Collection[str]) -> int:
    """Deletes those of ``hashes`` no history uses any more; returns how many."""
    deleted = 0
    for chunk in _chunks(list(hashes)):
        cur = await db.execute(
            f"DELETE FROM blobs WHERE sha256 IN ({_marks(chunk)}) AND NOT EXISTS "
            "(SELECT 1 FROM blob_uses u WHERE u.sha256 = blobs.sha256)", chunk)
        deleted += cur.rowcount
    return deleted


class FileRecords:
    """The ``gemini_files`` table, and questions about blob uses.

    Args:
        db: the store's connection.
        write_lock: the store's lock that serializes writes.
    """

    def __init__(self, db: Db, write_lock: asyncio.Lock) -> None:
        self.db = db
        self._write_lock = write_lock

    async def get(self, namespace: str, hashes: Collection[str]) -> dict[str, FileRecord]:
        """The records of those blobs that have one (expired ones included)."""
        found: dict[str, FileRecord] = {}
        for chunk in _chunks(list(hashes)):
            async with self.db.execute(
                    "SELECT sha256, name, uri, mime_type, expires_at FROM gemini_files "
                    f"WHERE namespace=? AND sha256 IN ({_marks(chunk)})",
                    [namespace, *chunk]) as cur:
                found.update({r[0]: FileRecord(r[0], r[1], r[2], r[3], float(r[4]))
                              for r in await cur.fetchall()})
        return found

    async def save(self, namespace: str, record: FileRecord) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO gemini_files (namespace, sha256, name, uri, mime_type, "
                "expires_at) VALUES (?,?,?,?,?,?) ON CONFLICT (namespace, sha256) DO UPDATE "
                "SET name=excluded.name, uri=excluded.uri, mime_type=excluded.mime_type, "
                "expires_at=excluded.expires_at",
                (namespace, record.sha256, record.name, record.uri, record.mime_type,
                 record.expires_at))

    async def forget(self, namespace: str, hashes: Collection[str]) -> None:
        async with self._write_lock:
            for chunk in _chunks(list(hashes)):
                await self.db.execute(
                    f"DELETE FROM gemini_files WHERE namespace=? AND sha256 IN ({_marks(chunk)})",
                    [namespace, *chunk])

    async def forget_expired(self, now: float) -> int:
        """Drops records of files Gemini has already forgotten; returns how many."""
        async with self._write_lock:
            cur = await self.db.execute("DELETE FROM gemini_files WHERE expires_at <= ?", (now,))
            return cur.rowcount

    async def turn_blobs(self, turn_id: str) -> set[str]:
        """The blobs a turn's Contents name (before it is deleted)."""
        async with self.db.execute("SELECT sha256 FROM blob_uses WHERE turn_id=?",
                                   (turn_id,)) as cur:
            return {r[0] for r in await cur.fetchall()}

    async def thread_blobs(self, key: ThreadKey) -> set[str]:
        """Every blob a thread names (see :func:`thread_blobs`); empty for no such thread."""
        async with self.db.execute(
                "SELECT id FROM threads WHERE platform=? AND workspace=? AND channel=? "
                "AND thread=?", (key.platform, key.workspace, key.channel, key.thread)) as cur:
            row = await cur.fetchone()
        return await thread_blobs(self.db, int(row[0])) if row else set()

    async def forget_everywhere(self, hashes: Collection[str]) -> None:
        """Drops the records of these blobs in every namespace."""
        async with self._write_lock:
            for chunk in _chunks(list(hashes)):
                await self.db.execute(
                    f"DELETE FROM gemini_files WHERE sha256 IN ({_marks(chunk)})", chunk)

    async def unused(self, hashes: Collection[str]) -> set[str]:
        """Those of ``hashes`` that no history names any more."""
        used: set[str] = set()
        for chunk in _chunks(list(hashes)):
            async with self.db.execute(
                    f"SELECT DISTINCT sha256 FROM blob_uses WHERE sha256 IN ({_marks(chunk)})",
                    chunk) as cur:
                used.update(r[0] for r in await cur.fetchall())
        return set(hashes) - used


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _marks(chunk: list[str]) -> str:
    return ",".join("?" * len(chunk))
