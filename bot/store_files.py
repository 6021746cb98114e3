"""The store's side of the Files API: which Gemini file holds each blob, and which blobs a
thread's history still uses (so files and blobs nothing uses can be deleted).

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

import aiosqlite

from bot import history
from bot.model import ThreadKey

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


async def migrate(db: aiosqlite.Connection) -> None:
    """Schema 3: the file records table, and the uses of every blob already stored."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            await db.execute(statement)
    async with db.execute(
            "SELECT c.thread_id, c.turn_id, c.role, c.content FROM contents c") as cur:
        rows = await cur.fetchall()
    uses = {(h, thread_id, turn_id) for thread_id, turn_id, role, text in rows
            for h in history.parse_row(turn_id, role, text).blob_hashes()}
    await db.executemany("INSERT OR IGNORE INTO blob_uses (sha256, thread_id, turn_id) "
                         "VALUES (?,?,?)", sorted(uses))


def add_uses(db: sqlite3.Connection, thread_id: int, turn_id: str,
             hashes: Iterable[str]) -> None:
    """Records that a turn's Contents name these blobs (inside the turn's transaction, on
    the connection's thread)."""
    db.executemany("INSERT OR IGNORE INTO blob_uses (sha256, thread_id, turn_id) "
                   "VALUES (?,?,?)", [(h, thread_id, turn_id) for h in set(hashes)])


def restore_missing_blobs(db: sqlite3.Connection, blobs: history.Blobs) -> None:
    """Writes again, inside the turn's transaction (on the connection's thread), any of its
    blobs deleted since they were checked (a thread sharing them was deleted in between):
    rare, and then cheap."""
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


async def thread_blobs(db: aiosqlite.Connection, thread_id: int) -> set[str]:
    """Every blob a thread names: in its history, and in its turn records (deleted turns'
    included: their images are still in the blobs table)."""
    async with db.execute("SELECT sha256 FROM blob_uses WHERE thread_id=?",
                          (thread_id,)) as cur:
        found = {r[0] for r in await cur.fetchall()}
    async with db.execute("SELECT refs, reply FROM turns WHERE thread_id=?",
                          (thread_id,)) as cur:
        for refs, reply in await cur.fetchall():
            found.update(r["sha256"] for r in json.loads(refs))
            stored = json.loads(reply)
            found.update(p["sha256"] for p in (*stored.get("parts", ()),
                                                *stored.get("thoughts", ()))
                         if p.get("kind") == "image" and p.get("sha256"))
    return found


async def delete_unused_blobs(db: aiosqlite.Connection, hashes: Collection[str]) -> int:
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

    def __init__(self, db: aiosqlite.Connection, write_lock: asyncio.Lock) -> None:
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
                "INSERT OR REPLACE INTO gemini_files (namespace, sha256, name, uri, mime_type, "
                "expires_at) VALUES (?,?,?,?,?,?)",
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
