"""Batch jobs in SQLite (``batch_jobs``, ``batch_lines``), over the history store's
connection and write lock.

A job is written before it is created at Gemini (state ``creating``, with a lease), so a
crash anywhere leaves a row that says what to do next: look the job up by its display name,
create it, poll it, store its results, post them. Every change of state is one short
statement or transaction, guarded by the state it expects, so two processes never both
act on the same step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from bot.batch import (
    CREATING,
    ENDED,
    LINE_PENDING,
    PENDING,
    RUNNING,
    BatchJobView,
    BatchLineView,
    RemoteFile,
)
from bot.model import Author, ImageRef, StoredImage, ThreadKey, Usage
from bot.prices import PRICES
from bot.store_api import Store

_JOB_SQL = (
    "SELECT j.*, "
    "(SELECT COUNT(*) FROM batch_lines l WHERE l.job_id=j.id) AS total, "
    "(SELECT COALESCE(SUM(l.images), 0) FROM batch_lines l WHERE l.job_id=j.id) AS n_images, "
    "(SELECT COALESCE(SUM(l.cost), 0) FROM batch_lines l WHERE l.job_id=j.id) AS n_cost, "
    "(SELECT json_group_object(status, n) FROM (SELECT status, COUNT(*) AS n FROM batch_lines "
    " l WHERE l.job_id=j.id GROUP BY status)) AS n_counts "
    "FROM batch_jobs j")


@dataclass(frozen=True)
class NewJob:
    """A job as first written, before Gemini knows it."""

    id: str
    display_name: str
    key: ThreadKey
    author: Author
    model: str
    options: Mapping[str, Any]
    refs: Sequence[StoredImage]
    lines: Sequence[tuple[int, str, Mapping[str, Any]]]
    lease_until: float
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LineResult:
    """A line's outcome as stored."""

    number: int
    status: str
    result: Mapping[str, Any]
    images: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class UsageRow:
    turn_id: str
    usage: Usage
    images: int


class BatchStore:
    """The batch tables; uses the history store's connection and its write transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db: aiosqlite.Connection = store.db

    # --- writing --------------------------------------------------------------------------

    async def insert(self, job: NewJob) -> None:
        async with self.store.transaction():
            await self.db.execute(
                "INSERT INTO batch_jobs (id, display_name, platform, workspace, channel, thread, "
                "author_id, author_name, model, options, refs, state, lease_until, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.display_name, job.key.platform, job.key.workspace, job.key.channel,
                 job.key.thread, job.author.id, job.author.name, job.model,
                 json.dumps(job.options), json.dumps([r.__dict__ for r in job.refs]), CREATING,
                 job.lease_until, job.created_at, job.created_at))
            await self.db.executemany(
                "INSERT INTO batch_lines (job_id, number, prompt, options) VALUES (?,?,?,?)",
                [(job.id, number, prompt, json.dumps(options))
                 for number, prompt, options in job.lines])

    async def take_lease(self, job_id: str, until: float) -> bool:
        """Claims a ``creating`` job whose lease ran out (nobody is creating it now)."""
        return await self._update(
            "UPDATE batch_jobs SET lease_until=?, updated_at=? WHERE id=? AND state=? "
            "AND lease_until<?", (until, time.time(), job_id, CREATING, time.time()))

    async def release(self, job_id: str) -> None:
        """Gives up a lease at once (a create that may have happened is to be checked)."""
        await self._update("UPDATE batch_jobs SET lease_until=0 WHERE id=?", (job_id,))

    async def set_remote_refs(self, job_id: str, refs: Sequence[RemoteFile]) -> None:
        await self._update("UPDATE batch_jobs SET remote_refs=? WHERE id=?",
                           (json.dumps([r.__dict__ for r in refs]), job_id))

    async def set_input_file(self, job_id: str, name: str) -> None:
        await self._update("UPDATE batch_jobs SET input='file', input_file=? WHERE id=?",
                           (name, job_id))

    async def created(self, job_id: str, name: str, state: str, next_poll_at: float) -> bool:
        """Records the name Gemini gave the job; False when it was recorded already."""
        return await self._update(
            "UPDATE batch_jobs SET name=?, state=?, lease_until=0, next_poll_at=?, "
            "updated_at=? WHERE id=? AND state=?",
            (name, state, next_poll_at, time.time(), job_id, CREATING))

    async def polled(self, job_id: str, state: str, next_poll_at: float) -> None:
        await self._update(
            "UPDATE batch_jobs SET state=?, polls=polls+1, next_poll_at=?, updated_at=? "
            "WHERE id=? AND results_at IS NULL",
            (state, next_poll_at, time.time(), job_id))

    async def failed(self, job_id: str, error: str) -> None:
        """A job Gemini never took (a refused create): nothing is left to do for it."""
        now = time.time()
        async with self.store.transaction():
            await self.db.execute(
                "UPDATE batch_jobs SET state='failed', error=?, lease_until=0, results_at=?, "
                "updated_at=? WHERE id=?", (error, now, now, job_id))
            await self.db.execute(
                "UPDATE batch_lines SET status='not_run' WHERE job_id=? AND status=?",
                (job_id, LINE_PENDING))

    async def store_results(self, job: BatchJobView, state: str, error: str,
                            results: Iterable[LineResult], usage: Iterable[UsageRow],
                            not_run: str) -> bool:
        """Stores every line's outcome, the usage rows and the final state at once.

        Lines without a result get ``not_run``. Returns False when results were stored
        before (by another process).
        """
        now = time.time()
        async with self.store.transaction():
            cur = await self.db.execute(
                "UPDATE batch_jobs SET state=?, error=?, results_at=?, updated_at=? "
                "WHERE id=? AND results_at IS NULL", (state, error, now, now, job.id))
            if cur.rowcount == 0:
                return False
            await self.db.executemany(
                "UPDATE batch_lines SET status=?, result=?, images=?, cost=? "
                "WHERE job_id=? AND number=?",
                [(r.status, json.dumps(r.result), r.images, r.cost, job.id, r.number)
                 for r in results])
            await self.db.execute(
                "UPDATE batch_lines SET status=? WHERE job_id=? AND status=?",
                (not_run, job.id, LINE_PENDING))
            await self._usage(job, usage, now)
        return True

    async def _usage(self, job: BatchJobView, rows: Iterable[UsageRow], now: float) -> None:
        key = job.key
        await self.db.executemany(
            "INSERT INTO usage (turn_id, platform, workspace, channel, thread, author_id, "
            "model, prompt_tokens, output_tokens, thought_tokens, total_tokens, images, "
            "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(row.turn_id, key.platform, key.workspace, key.channel, key.thread, job.author.id,
              job.model, row.usage.prompt_tokens, row.usage.output_tokens,
              row.usage.thought_tokens, row.usage.total_tokens, row.images, now)
             for row in rows])

    async def mark_posted(self, job_id: str, numbers: Sequence[int]) -> None:
        await self._many("UPDATE batch_lines SET posted=1 WHERE job_id=? AND number=?",
                         [(job_id, n) for n in numbers])

    async def delivered(self, job_id: str, posts: Mapping[str, Any]) -> None:
        await self._update(
            "UPDATE batch_jobs SET delivered_at=?, posts=? WHERE id=? AND delivered_at IS NULL",
            (time.time(), json.dumps(dict(posts)), job_id))

    async def add_posts(self, job_id: str, posts: Mapping[str, Any]) -> None:
        """Remembers where something about the job was posted (the submission message)."""
        await self._update("UPDATE batch_jobs SET posts=json_patch(posts, ?) WHERE id=?",
                           (json.dumps(dict(posts)), job_id))

    # --- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> BatchJobView | None:
        rows = await self._jobs(" WHERE j.id=?", (job_id,))
        return rows[0] if rows else None

    async def find(self, ref: str) -> list[BatchJobView]:
        """Jobs ``ref`` names: a local id or its start, ``batches/…`` or a display name."""
        ref = ref.strip()
        if not ref:
            return []
        return await self._jobs(
            " WHERE j.id=? OR j.name=? OR j.display_name=? OR (length(?)>=4 AND j.id LIKE ?)",
            (ref, ref, ref, ref, ref.replace("%", "").replace("_", "") + "%"))

    async def jobs(self, key: ThreadKey | None = None, *, platform: str | None = None,
                   limit: int = 100) -> list[BatchJobView]:
        if key is not None:
            return await self._jobs(
                " WHERE j.platform=? AND j.workspace=? AND j.channel=? AND j.thread=? "
                "ORDER BY j.created_at DESC LIMIT ?",
                (key.platform, key.workspace, key.channel, key.thread, limit))
        if platform is not None:
            return await self._jobs(" WHERE j.platform=? ORDER BY j.created_at DESC LIMIT ?",
                                    (platform, limit))
        return await self._jobs(" ORDER BY j.created_at DESC LIMIT ?", (limit,))

    async def recoverable(self) -> list[BatchJobView]:
        """Jobs stored but maybe not created, that nobody is creating now."""
        return await self._jobs(" WHERE j.state=? AND j.lease_until<?", (CREATING, time.time()))

    async def due(self) -> list[BatchJobView]:
        """Jobs to poll now: waiting or running at Gemini, and due."""
        return await self._jobs(
            " WHERE j.state IN (?, ?) AND j.next_poll_at<=? AND j.results_at IS NULL "
            "ORDER BY j.next_poll_at", (PENDING, RUNNING, time.time()))

    async def next_poll_at(self) -> float | None:
        async with self.db.execute(
            "SELECT MIN(next_poll_at) FROM batch_jobs WHERE state IN (?, ?) "
            "AND results_at IS NULL", (PENDING, RUNNING)) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def undelivered(self) -> list[BatchJobView]:
        """Ended jobs whose results are stored but not yet all posted."""
        marks = ",".join("?" * len(ENDED))
        return await self._jobs(
            f" WHERE j.state IN ({marks}) AND j.results_at IS NOT NULL "
            "AND j.delivered_at IS NULL ORDER BY j.created_at", tuple(sorted(ENDED)))

    async def lines(self, job_id: str, *, unposted: bool = False) -> list[BatchLineView]:
        sql = "SELECT * FROM batch_lines WHERE job_id=?"
        if unposted:
            sql += " AND posted=0"
        async with self.db.execute(sql + " ORDER BY number", (job_id,)) as cur:
            return [_line(r) for r in await cur.fetchall()]

    async def line_options(self, job_id: str) -> dict[int, dict[str, Any]]:
        async with self.db.execute("SELECT number, options FROM batch_lines WHERE job_id=?",
                                   (job_id,)) as cur:
            return {int(r[0]): json.loads(r[1]) for r in await cur.fetchall()}

    async def refs(self, job_id: str) -> tuple[list[StoredImage], list[RemoteFile]]:
        async with self.db.execute("SELECT refs, remote_refs FROM batch_jobs WHERE id=?",
                                   (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return [], []
        return ([StoredImage(**r) for r in json.loads(row[0])],
                [RemoteFile(**r) for r in json.loads(row[1])])

    async def input_file(self, job_id: str) -> str:
        async with self.db.execute("SELECT input_file FROM batch_jobs WHERE id=?",
                                   (job_id,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else ""

    # --- internals ----------------------------------------------------------------------------

    async def _jobs(self, where: str, args: tuple[Any, ...]) -> list[BatchJobView]:
        async with self.db.execute(_JOB_SQL + where, args) as cur:
            return [_job(r) for r in await cur.fetchall()]

    async def _update(self, sql: str, args: tuple[Any, ...]) -> bool:
        async with self.store.transaction():
            cur = await self.db.execute(sql, args)
            return cur.rowcount > 0

    async def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self.store.transaction():
            await self.db.executemany(sql, rows)


def _job(row: aiosqlite.Row) -> BatchJobView:
    counts = json.loads(row["n_counts"] or "{}")
    return BatchJobView(
        id=row["id"], display_name=row["display_name"], name=row["name"],
        key=ThreadKey(row["platform"], row["workspace"], row["channel"], row["thread"]),
        author=Author(row["author_id"], row["author_name"]), model=row["model"],
        options=json.loads(row["options"]), state=row["state"], error=row["error"],
        total=int(row["total"]), counts={str(k): int(v) for k, v in counts.items()},
        images=int(row["n_images"]),
        cost=float(row["n_cost"]) if row["model"] in PRICES else None,
        created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
        input=row["input"], results_at=row["results_at"], delivered_at=row["delivered_at"],
        posts=json.loads(row["posts"] or "{}"), polls=int(row["polls"]))


def _line(row: aiosqlite.Row) -> BatchLineView:
    result = json.loads(row["result"] or "{}")
    usage = result.get("usage") or {}
    return BatchLineView(
        number=int(row["number"]), prompt=row["prompt"], status=row["status"],
        images=tuple(ImageRef(i["sha256"], i["mime_type"], int(i.get("width") or 0),
                              int(i.get("height") or 0)) for i in result.get("images") or ()),
        texts=tuple(result.get("texts") or ()), error=str(result.get("error") or ""),
        usage=Usage(**{k: int(usage.get(k, 0)) for k in Usage.__dataclass_fields__}),
        posted=bool(row["posted"]))
