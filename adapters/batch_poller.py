"""``serve``'s batch poller: it recovers jobs whose submitter died, polls running jobs with
backoff, and posts each finished job's results into its thread, on whichever surface the
job came from.

Everything it does is recorded in the store as it goes (job states, which lines were
posted), so a restart picks up where the last process stopped: at most one chunk of
results is posted twice after a crash in the middle of posting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.batch import BatchJobView, BatchLineView, summary_text
from bot.errors import ImagebotError
from bot.service import ConversationService

logger = logging.getLogger(__name__)

#: Lines posted together (one upload of up to this many images, one list of failures).
CHUNK = 10
#: Surfaces without a live place to post: results are kept for ``imagebot batch results``
#: and the web playground's download.
KEPT_ONLY = frozenset({"cli", "web"})


class BatchPoster(Protocol):
    """Posts a finished batch into its thread on one platform. It raises when the platform
    cannot take the post now; the poller tries again later."""

    async def post_results(self, job: BatchJobView, lines: Sequence[BatchLineView]) -> None:
        """Posts some lines: each image with its prompt, failures with their reasons."""

    async def post_summary(self, job: BatchJobView, text: str) -> dict[str, Any]:
        """Posts the closing summary line; returns where it went."""


class BatchPoller:
    """Runs in ``serve``: recover, poll, deliver, then sleep until the next job is due."""

    def __init__(self, service: ConversationService, posters: Mapping[str, BatchPoster], *,
                 interval: float) -> None:
        self.service = service
        self.batches = service.batches
        self.posters = dict(posters)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._waiting_for: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="imagebot-batch-poller")

    def wake(self) -> None:
        """Look again now (a job was just submitted here)."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Cancelled again if something inside swallowed the first cancellation.
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    def status(self) -> dict[str, Any]:
        return {"running": self._task is not None and not self._task.done()}

    async def _loop(self) -> None:
        task = asyncio.current_task()
        while True:
            try:
                await self.run_once()
            except Exception:  # the poller must outlive any one bad job or outage
                logger.exception("batch poller: a round failed")
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # stopping, whatever the round made of it
            due = await self._next_due()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=due)

    async def _next_due(self) -> float:
        try:
            due = await self.batches.next_poll_in()
        except Exception:  # a busy database: look again after the usual interval
            return self.interval
        return self.interval if due is None else min(self.interval, max(due, 0.01))

    async def run_once(self) -> None:
        """One round: recover lost creates, poll what is due, post what has finished."""
        await self.batches.recover()
        await self.batches.poll_due()
        for job in await self.batches.undelivered():
            await self.deliver(job)

    async def deliver(self, job: BatchJobView) -> None:
        """Posts a finished job's remaining results, then its summary."""
        if job.key.platform in KEPT_ONLY:
            await self.batches.delivered(job.id)
            logger.info("batch %s %s; results kept for download", job.id, job.state)
            return
        poster = self.posters.get(job.key.platform)
        if poster is None:
            if job.id not in self._waiting_for:
                self._waiting_for.add(job.id)
                logger.warning("batch %s finished, but %s is not running here; its results "
                               "are posted once it is", job.id, job.key.platform)
            return
        try:
            await self._post(poster, job)
        except ImagebotError as exc:
            logger.warning("batch %s: posting stopped (%s); trying again later", job.id,
                           exc.user_message)
        except Exception:
            logger.exception("batch %s: posting failed; trying again later", job.id)

    async def _post(self, poster: BatchPoster, job: BatchJobView) -> None:
        lines = await self.batches.lines(job.id, unposted=True)
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start:start + CHUNK]
            await poster.post_results(job, chunk)
            await self.batches.mark_posted(job.id, [line.number for line in chunk])
        fresh = await self.batches.job(job.id)
        posts = await poster.post_summary(fresh, summary_text(fresh,
                                                              self.batches.label(job.model)))
        await self.batches.delivered(job.id, posts)
        self._waiting_for.discard(job.id)
        logger.info("batch %s delivered to %s", job.id, job.key)
