"""Batch jobs end to end, for adapters (through ``ConversationService.batches``): submit,
recover, poll, store results, and what the poller needs to post them.

The order of a submission never loses or doubles a job: the job and its lines are stored
first (state ``creating``, leased to the submitting process); references and, when the
job is too big to send inline, a JSONL input file go up through the Files API; then the
job is created at Gemini under a display name unique to it, and its name is stored. If
the process dies in between, whoever recovers the job (``serve``'s poller) first looks it up
by that display name, and creates it only when Gemini does not list it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bot import images
from bot.batch import (
    CANCELLED,
    CREATING,
    EXPIRED,
    FAILED,
    INLINE_LIMIT,
    LINE_NOT_RUN,
    SUCCEEDED,
    BatchJobView,
    BatchLineView,
    BatchPlan,
    BatchSubmission,
    PlannedLine,
    RemoteFile,
    inline_requests,
    input_size,
    jsonl_input,
    local_state,
    plan_batch,
)
from bot.batch_remote import BatchRemote, uncertain
from bot.batch_store import BatchStore, NewJob, UsageRow
from bot.errors import ErrorKind, ImagebotError, NotFoundError, OptionError, ServiceError
from bot.model import Attachment, Author, StoredImage, ThreadKey
from bot.options import OptionInput, Options, caps_for, resolve
from bot.planning import PlanLimits
from bot.store_api import Store

if TYPE_CHECKING:  # google.genai costs ~0.6 s to import; commands that only read never need it
    from google.genai import types

    from bot.batch_results import Outcome
    from bot.gemini import GeminiSession

logger = logging.getLogger(__name__)

#: How long a submitting process holds a job it is creating.
CREATE_LEASE = 600.0
#: Polling backs off by this factor from the base interval, up to 20 times the base.
BACKOFF = 1.5
Prepare = Callable[[tuple[Attachment, ...]], Awaitable[list[images.PreparedImage]]]


class BatchService:
    """Submits and follows Batch API jobs; its state lives in SQLite, so any process
    (``imagebot batch`` or ``serve``) can take up where another left off."""

    def __init__(self, store: Store, gemini: GeminiSession, limits: PlanLimits,
                 prepare: Prepare, *, poll_seconds: float = 30.0,
                 inline_limit: int = INLINE_LIMIT) -> None:
        self.store = store
        self.jobs_db = BatchStore(store)
        self.remote = BatchRemote(gemini)
        self.limits = limits
        self.prepare = prepare
        self.poll_seconds = poll_seconds
        self.inline_limit = inline_limit
        #: Who may submit where (team policy: access lists, ``batch`` allowed); set by the
        #: service, raises a PolicyError to refuse.
        self.admit: Callable[[ThreadKey, Author], Awaitable[None]] | None = None
        #: Called once a job's results are stored, with its usage rows (the cost ledger).
        self.charged: Callable[[BatchJobView, list[UsageRow], dict[int, dict[str, Any]]],
                               Awaitable[None]] | None = None

    # --- submitting ---------------------------------------------------------------------

    async def plan(self, submission: BatchSubmission) -> BatchPlan:
        """Checks a submission without side effects (an early, identical refusal).

        Raises:
            ImagebotError: the first problem, naming its line.
        """
        sticky = await self.store.settings(submission.key)
        return plan_batch(submission, sticky=sticky, limits=self.limits)

    async def submit(self, submission: BatchSubmission) -> tuple[BatchJobView, BatchPlan]:
        """Stores the job, then creates it at Gemini.

        Returns:
            The job as stored, and its plan (for the estimate).

        Raises:
            ImagebotError: the submission was refused (nothing was created), or Gemini did
                not confirm the create (the job is checked again later, and says so).
        """
        if self.admit is not None:
            await self.admit(submission.key, submission.author)
        plan = await self.plan(submission)
        refs = await self.prepare(plan.attachments)
        await self.store.write_blobs({r.sha256: (r.mime_type, r.data) for r in refs})
        job_id = uuid.uuid4().hex[:16]
        await self.jobs_db.insert(NewJob(
            id=job_id, display_name=f"imagebot-batch-{job_id}", key=submission.key,
            author=submission.author, model=plan.model,
            options=_options_dict(plan.options),
            refs=[StoredImage(r.sha256, r.mime_type, r.name) for r in refs],
            lines=[(line.number, line.prompt, _options_dict(line.options))
                   for line in plan.lines],
            lease_until=time.time() + CREATE_LEASE))
        await self._create(job_id)
        return await self._job(job_id), plan

    async def _create(self, job_id: str) -> None:
        """Uploads what the job needs and creates it; the job must be leased to us."""
        job = await self._job(job_id)
        lines = await self._planned_lines(job_id)
        refs = await self._remote_refs(job)
        try:
            if input_size(lines, refs) > self.inline_limit:
                src: list[types.InlinedRequest] | str = await self._input_file(job, lines, refs)
            else:
                src = inline_requests(lines, refs)
            remote = await self.remote.create(job.model, src, job.display_name)
        except ImagebotError as exc:
            if uncertain(exc):
                await self.jobs_db.release(job_id)
                raise ServiceError(
                    f"Gemini did not confirm the batch ({exc.user_message}) Batch "
                    f"{job_id[:8]} is kept: imagebot checks whether Gemini has it and submits "
                    "it if not; its results are posted as usual.", kind=exc.kind) from exc
            await self.jobs_db.failed(job_id, exc.user_message)
            raise
        await self.jobs_db.created(job_id, remote.name or "", local_state(remote.state),
                                   time.time() + self.poll_seconds)
        logger.info("batch %s created as %s (%d lines)", job_id, remote.name, len(lines))

    async def _remote_refs(self, job: BatchJobView) -> list[RemoteFile]:
        stored, remote = await self.jobs_db.refs(job.id)
        if len(remote) == len(stored):
            return remote
        blobs = await self.store.get_blobs([r.sha256 for r in stored])
        uploaded = []
        for ref in stored:
            uploaded.append(await self.remote.upload(blobs[ref.sha256], ref.mime_type,
                                                     f"{job.display_name} {ref.name}"[:120]))
        await self.jobs_db.set_remote_refs(job.id, uploaded)
        return uploaded

    async def _input_file(self, job: BatchJobView, lines: Sequence[PlannedLine],
                          refs: Sequence[RemoteFile]) -> str:
        existing = await self.jobs_db.input_file(job.id)
        if existing:
            return existing
        data = await asyncio.to_thread(jsonl_input, lines, refs)
        uploaded = await self.remote.upload(data, "application/jsonl",
                                            f"{job.display_name} input")
        await self.jobs_db.set_input_file(job.id, uploaded.name)
        return uploaded.name

    async def _planned_lines(self, job_id: str) -> list[PlannedLine]:
        stored = await self.jobs_db.lines(job_id)
        options = await self.jobs_db.line_options(job_id)
        return [PlannedLine(line.number, line.prompt, self._options(options[line.number]))
                for line in stored]

    def _options(self, stored: dict[str, Any]) -> Options:
        return resolve(OptionInput.from_dict(stored), OptionInput(), OptionInput(),
                       self.limits.models)

    # --- following jobs -------------------------------------------------------------------

    async def recover(self) -> None:
        """Jobs stored but perhaps never created (their submitter died or lost the answer):
        adopted when Gemini lists them by display name, created otherwise."""
        for job in await self.jobs_db.recoverable():
            await self._recover(job)

    async def _recover(self, job: BatchJobView) -> None:
        """Adopts or creates one job, if nobody else holds it (its lease ran out)."""
        if not await self.jobs_db.take_lease(job.id, time.time() + CREATE_LEASE):
            return
        try:
            found = await self.remote.find(job.display_name)
            if found is not None and found.name:
                await self.jobs_db.created(job.id, found.name, local_state(found.state),
                                           time.time())
                logger.info("batch %s was created before (%s): adopted", job.id, found.name)
                return
            await self._create(job.id)
        except ImagebotError as exc:
            logger.warning("batch %s: recovery failed: %s", job.id, exc.user_message)
            await self.jobs_db.release(job.id)

    async def poll_due(self) -> None:
        """Polls every job that is due; a failure backs that job off and is logged."""
        for job in await self.jobs_db.due():
            try:
                await self.refresh(job.id)
            except ImagebotError as exc:
                logger.warning("batch %s: polling failed: %s", job.id, exc.user_message)
                await self.jobs_db.polled(job.id, job.state, time.time() + self._delay(job))

    async def refresh(self, job_ref: str) -> BatchJobView:
        """Asks Gemini about a job once; stores its results when it has ended.

        Raises:
            NotFoundError: no such job here.
            ServiceError: Gemini could not be asked.
        """
        job = await self.job(job_ref)
        if job.state == CREATING:  # stranded by a submitter that died: take it up here
            await self._recover(job)
            job = await self._job(job.id)
        if job.state == CREATING or not job.name or job.results_at is not None:
            return job
        try:
            remote = await self.remote.get(job.name)
        except ServiceError as exc:
            if exc.kind != ErrorKind.MODEL:  # 404: the job is gone at Gemini
                raise
            await self.jobs_db.store_results(job, FAILED, "Gemini no longer has this job.",
                                             [], [], LINE_NOT_RUN)
            return await self._job(job.id)
        state = local_state(remote.state)
        if state in (SUCCEEDED, FAILED, CANCELLED, EXPIRED):
            await self._store_results(job, remote, state)
        else:
            await self.jobs_db.polled(job.id, state, time.time() + self._delay(job))
        return await self._job(job.id)

    def _delay(self, job: BatchJobView) -> float:
        polls = job.polls
        return min(self.poll_seconds * 20, self.poll_seconds * BACKOFF ** polls)

    async def _store_results(self, job: BatchJobView, remote: types.BatchJob,
                             state: str) -> None:
        from bot.batch_results import file_outcomes, inline_outcomes, line_results

        outcomes: dict[int, Outcome] = {}
        dest = remote.dest
        if dest is not None and dest.inlined_responses:
            outcomes = inline_outcomes(list(dest.inlined_responses))
        elif dest is not None and dest.file_name:
            data = await self.remote.download(dest.file_name)
            outcomes = await asyncio.to_thread(file_outcomes, data)
        options = await self.jobs_db.line_options(job.id)
        mapped = await asyncio.to_thread(line_results, outcomes, options, job_id=job.id,
                                         model=job.model)
        await self.store.write_blobs(mapped.blobs)
        await self._check_stats(job, mapped.results)
        stored = await self.jobs_db.store_results(job, state, _job_error(remote, state),
                                                  mapped.results, mapped.usage, LINE_NOT_RUN)
        if stored:
            logger.info("batch %s %s: %d results stored", job.id, state, len(mapped.results))
            if self.charged is not None:
                await self.charged(job, list(mapped.usage), options)

    async def _check_stats(self, job: BatchJobView, results: Sequence[Any]) -> None:
        try:
            stats = await self.remote.stats(job.name)
        except ImagebotError as exc:
            logger.info("batch %s: no batchStats (%s)", job.id, exc.user_message)
            return
        failed = sum(1 for r in results if r.status != "done")
        reported = stats.get("failedRequestCount", 0)
        if reported > failed:
            logger.warning("batch %s: Gemini counts %d failed requests, the results show %d",
                           job.id, reported, failed)

    async def cancel(self, job_ref: str) -> BatchJobView:
        """Cancels a job at Gemini (what finished already is still posted).

        Raises:
            NotFoundError: no such job. OptionError: it has ended or is being submitted.
        """
        job = await self.job(job_ref)
        if job.ended:
            raise OptionError(f"Batch {job.short} has already {job.state}; nothing to cancel.")
        if job.state == CREATING or not job.name:
            raise OptionError(f"Batch {job.short} is still being submitted; cancel it in a "
                              "minute.")
        await self.remote.cancel(job.name)
        return await self.refresh(job.id)

    # --- reading ---------------------------------------------------------------------------

    async def job(self, ref: str) -> BatchJobView:
        """The job a reference names (its id, the start of it, or ``batches/…``).

        Raises:
            NotFoundError: none, or more than one.
        """
        found = await self.jobs_db.find(ref)
        if len(found) == 1:
            return found[0]
        if not found:
            raise NotFoundError(f"No batch `{ref}` here. `imagebot batch list` lists them.")
        raise NotFoundError(f"`{ref}` names {len(found)} batches; give more of the id.")

    async def _job(self, job_id: str) -> BatchJobView:
        job = await self.jobs_db.get(job_id)
        if job is None:
            raise NotFoundError(f"Batch {job_id[:8]} no longer exists.")
        return job

    async def jobs(self, key: ThreadKey | None = None, *,
                   platform: str | None = None) -> list[BatchJobView]:
        return await self.jobs_db.jobs(key, platform=platform)

    async def lines(self, job_id: str, *, unposted: bool = False) -> list[BatchLineView]:
        return await self.jobs_db.lines(job_id, unposted=unposted)

    async def undelivered(self) -> list[BatchJobView]:
        return await self.jobs_db.undelivered()

    async def next_poll_in(self) -> float | None:
        """Seconds until the next job is due (``None``: nothing to poll)."""
        due = await self.jobs_db.next_poll_at()
        return None if due is None else max(0.0, due - time.time())

    async def mark_posted(self, job_id: str, numbers: Sequence[int]) -> None:
        await self.jobs_db.mark_posted(job_id, numbers)

    async def delivered(self, job_id: str, posts: dict[str, Any] | None = None) -> None:
        await self.jobs_db.delivered(job_id, posts or {})

    async def remember_posts(self, job_id: str, posts: dict[str, Any]) -> None:
        await self.jobs_db.add_posts(job_id, posts)

    def label(self, model: str) -> str:
        return caps_for(model, self.limits.models).label


def _options_dict(options: Options) -> dict[str, Any]:
    return {"model": options.model, "aspect_ratio": options.aspect_ratio, "size": options.size,
            "search": options.search, "image_only": options.image_only}


def _job_error(remote: types.BatchJob, state: str) -> str:
    if state == EXPIRED:
        return ("Gemini did not finish it within 48 hours; prompts that did not run are not "
                "charged.")
    if remote.error is not None and remote.error.message:
        return f"Gemini said: {remote.error.message}"
    return ""
