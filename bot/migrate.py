"""``imagebot migrate-db``: copies an SQLite database into an empty PostgreSQL one.

Both are first brought to their current schema. Blobs are copied in batches (each a short
transaction, and skipped when the target already has them), then every other table in one
transaction, keeping row ids so turn records, buttons and history stay exactly as they
were. Thread lines and OAuth states are not copied: they live seconds to minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.config import ConfigError, database_path_of, is_postgres_url

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg

    from bot.store import HistoryStore

logger = logging.getLogger(__name__)

#: Tables copied in one transaction after the blobs, in an order foreign keys accept.
TABLES: tuple[tuple[str, str], ...] = (
    ("threads", "id"),
    ("contents", "id"),
    ("blob_uses", "sha256, thread_id, turn_id"),
    ("gemini_files", "namespace, sha256"),
    ("turns", "rowid"),
    ("usage", "id"),
    ("events", "event_id"),
    ("installations", "platform, key"),
)
#: Serial columns whose sequences must continue after the copied ids.
_SEQUENCES = (("threads", "id"), ("contents", "id"), ("usage", "id"), ("turns", "seq"))
BLOB_BATCH_BYTES = 32 * 2**20

Progress = Callable[[str], None]


@dataclass
class MigrationReport:
    """Rows copied per table (blobs: copied and already there)."""

    rows: dict[str, int] = field(default_factory=dict)
    blobs_skipped: int = 0

    def summary(self) -> str:
        parts = [f"{name} {count}" for name, count in self.rows.items()]
        return ", ".join(parts) + f" (blobs already there: {self.blobs_skipped})"


async def migrate_database(source: str, target: str, *,
                           progress: Progress = lambda _: None) -> MigrationReport:
    """Copies the SQLite database ``source`` into the PostgreSQL database ``target``.

    Raises:
        ConfigError: URLs of the wrong kinds, or a target that already has threads.
    """
    import asyncpg

    from bot.store import HistoryStore
    from bot.store_pg import PgHistoryStore

    if is_postgres_url(source) or not is_postgres_url(target):
        raise ConfigError("migrate-db copies an SQLite database (--from sqlite:///…) into a "
                          "PostgreSQL one (--to postgresql://…)")
    path = database_path_of(source, "--from")
    if not path.is_file():
        raise ConfigError(f"--from: no SQLite database at {path}")
    sqlite = await HistoryStore.open(path)
    pg = await PgHistoryStore.open(target)
    try:
        if await pg.pool.fetchval("SELECT COUNT(*) FROM threads"):
            raise ConfigError("--to: the PostgreSQL database already has threads; migrate into "
                              "an empty database (or a new schema: ?search_path=NAME)")
        report = MigrationReport()
        async with pg.pool.acquire() as conn:
            await _copy_blobs(sqlite, conn, report, progress)
            async with conn.transaction():
                for table, order in TABLES:
                    report.rows[table] = await _copy_table(sqlite, conn, table, order)
                    progress(f"{table}: {report.rows[table]} rows")
                for table, column in _SEQUENCES:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
        return report
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"--to: PostgreSQL refused the copy: {exc}") from exc
    finally:
        await sqlite.close()
        await pg.close()


async def _copy_blobs(sqlite: HistoryStore, conn: asyncpg.Connection,
                      report: MigrationReport, progress: Progress) -> None:
    db = sqlite.db
    async with db.execute("SELECT sha256, size FROM blobs ORDER BY sha256") as cur:
        listing = [(r[0], int(r[1])) for r in await cur.fetchall()]
    present = {r[0] for r in await conn.fetch("SELECT sha256 FROM blobs")}
    batch: list[str] = []
    size = copied = 0
    for digest, length in listing:
        if digest in present:
            report.blobs_skipped += 1
            continue
        batch.append(digest)
        size += length
        if size >= BLOB_BATCH_BYTES:
            copied += await _copy_blob_batch(db, conn, batch)
            progress(f"blobs: {copied} of {len(listing)}")
            batch, size = [], 0
    if batch:
        copied += await _copy_blob_batch(db, conn, batch)
    report.rows["blobs"] = copied
    progress(f"blobs: {copied} copied, {report.blobs_skipped} already there")


async def _copy_blob_batch(db: aiosqlite.Connection, conn: asyncpg.Connection,
                           digests: list[str]) -> int:
    marks = ",".join("?" * len(digests))
    async with db.execute(
            f"SELECT sha256, mime_type, size, data FROM blobs WHERE sha256 IN ({marks})",
            digests) as cur:
        rows = [(r[0], r[1], int(r[2]), bytes(r[3])) for r in await cur.fetchall()]
    await conn.copy_records_to_table("blobs", records=rows,
                                     columns=["sha256", "mime_type", "size", "data"])
    return len(rows)


async def _copy_table(sqlite: HistoryStore, conn: asyncpg.Connection, table: str,
                      order: str) -> int:
    db = sqlite.db
    async with db.execute(f"SELECT * FROM {table} ORDER BY {order}") as cur:
        columns = [d[0] for d in cur.description]
        rows = [tuple(r) for r in await cur.fetchall()]
    if not rows:
        return 0
    if table == "turns":
        # PostgreSQL keeps SQLite's insertion order (rowid) in ``seq``.
        columns.append("seq")
        rows = [(*row, n) for n, row in enumerate(rows, start=1)]
    await conn.copy_records_to_table(table, records=rows, columns=columns)
    return len(rows)
