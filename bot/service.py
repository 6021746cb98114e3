"""The conversation service: the one façade adapters talk to.

It runs turns (an incoming message to a :class:`Reply`: plan, prepare reference images,
rebuild the request from the stored history, call Gemini, commit atomically) and answers
everything else an adapter needs: whether a thread is a session, claiming an event id,
stored turns and threads, settings, images and usage. Turns in one thread run one at a
time in arrival order; different threads run in parallel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from bot import images, messages
from bot.admission import Admission, TurnKind
from bot.batch_service import BatchService
from bot.capacity import Capacity
from bot.config import Settings
from bot.errors import (
    AttachmentError,
    CancelledTurn,
    ErrorKind,
    NotFoundError,
)
from bot.files import HistoryFiles
from bot.leases import DEFAULT_TTL, LinePlace, ThreadLines
from bot.model import (
    Attachment,
    Author,
    IncomingMessage,
    Reply,
    ReplyImage,
    ThreadKey,
    ThreadSummary,
    TurnView,
)
from bot.options import OptionInput, Options, caps_for, resolve
from bot.planning import PlanLimits, TurnPlan, plan_turn, sticky_settings
from bot.progress import Progress, ProgressCallback
from bot.store_api import NewTurn, Store
from bot.tasks import drain
from bot.team import MakePlan, TeamControls, message_plan
from bot.team_facade import TeamFacade
from bot.turn_values import (
    Made,
    fetch,
    image_blobs,
    known_hashes,
    parts_of,
    stored_view,
    uncancelled,
    with_view,
)

if TYPE_CHECKING:
    # google.genai costs ~0.6 s of CPU to import: the modules that need it at run time
    # (imagen, variations, streaming) are imported by the turn steps that use them, so a
    # read-only service (`imagebot threads`, `history`) never loads it.
    from google.genai import types

    from bot.gemini import Answer, GeminiSession
    from bot.turn_request import TurnRequests

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TurnStart:
    """Told to the adapter when a turn really starts (after waiting for the thread, and
    for a place at Gemini when the worker is at its capacity)."""

    key: ThreadKey
    options: Options
    waited: float

    def status(self) -> str:
        return f"Generating with {self.options.summary()}…"


StartCallback = Callable[[TurnStart], Awaitable[None]]


class ConversationService(TeamFacade):
    """Runs turns and answers adapters' questions about threads; owns the store.

    Team controls (policies, quotas, costs, usage, audit) are in :class:`TeamFacade`."""

    def __init__(self, store: Store, gemini: GeminiSession | None, settings: Settings, *,
                 lease: float = DEFAULT_TTL) -> None:
        """``gemini`` is None for a service that only reads threads (no turns)."""
        #: The store, for the composition and tests; adapters use the methods below.
        self.store = store
        self.gemini = gemini
        self.settings = settings
        #: Each thread's line, shared through the store with every other process.
        self.lines = ThreadLines(store, ttl=lease)
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._gate = asyncio.Semaphore(4)
        #: Turns at Gemini at once in this process (``IMAGEBOT_MAX_CONCURRENT_TURNS``).
        self.capacity = Capacity(settings.max_concurrent_turns)
        self._pixels = images.PixelBudget()
        self.limits = PlanLimits(defaults=settings.option_defaults, models=settings.models,
                                 max_attachment_bytes=settings.max_attachment_bytes)
        self.team = TeamControls(store, settings)
        #: Batch API jobs: submit, follow, results (see :mod:`bot.batch_service`).
        # A read-only service (gemini None) never submits or polls batches.
        self.batches = BatchService(store, cast("GeminiSession", gemini), self.limits,
                                    self._prepare,
                                    poll_seconds=settings.batch_poll_seconds,
                                    inline_limit=settings.batch_inline_limit)
        self.batches.admit = self.team.admit_batch
        self.batches.charged = self.team.batch_charged
        #: History images on Gemini's Files API (both stores keep their records).
        self.files = HistoryFiles(store, gemini, enabled=settings.use_files_api
                                  and hasattr(store, "files"))
        self._requests: TurnRequests | None = None

    @property
    def session(self) -> GeminiSession:
        """The Gemini session turns use (a read-only service has none)."""
        assert self.gemini is not None, "a read-only service runs no turns"
        return self.gemini

    @property
    def offline(self) -> bool:
        return self.gemini is not None and self.gemini.offline

    def queue_depth(self) -> int:
        """Turns running or waiting, across all threads."""
        return self.lines.depth()

    # --- turns -------------------------------------------------------------------------

    async def plan(self, key: ThreadKey | None, message: IncomingMessage) -> TurnPlan:
        """Checks a message as its turn would, without side effects (an early answer);
        the team policy and quotas are checked by :meth:`admit`, which reserves.

        Args:
            key: the thread, or ``None`` for a message that will open a new one.

        Raises:
            ImagebotError: what the turn would refuse, worded as the turn would.
        """
        sticky = await self.store.settings(key) if key else OptionInput()
        return plan_turn(message.text, message.attachments, ui=message.options, sticky=sticky,
                         limits=self.limits)

    async def handle(self, key: ThreadKey, message: IncomingMessage, *,
                     on_start: StartCallback | None = None,
                     admission: Admission | None = None,
                     on_progress: ProgressCallback | None = None) -> Reply:
        """Runs one turn for ``message`` in thread ``key``.

        Inline flags are taken out of the text (they win over the platform's own fields);
        the rest is the prompt. Options given here become the thread's settings.
        ``on_start`` is told when generation starts, ``on_progress`` what a thinking
        model streams (thought text, drafts, final parts, grounding, usage).

        Args:
            admission: the turn as let in by :meth:`admit` when the adapter accepted it;
                without one the turn is let in here (policy checked, quota reserved).

        Returns:
            The reply, with ``view`` set to the turn as stored.

        Raises:
            ImagebotError: any failure, with a message for the user; history is unchanged.
        """
        return await self._run(key, message.author, on_start=on_start,
                               on_progress=on_progress, sticky=True,
                               make_plan=message_plan(message), admission=admission,
                               direct=message.direct, carry=True)

    async def reroll(self, turn_id: str, *, author: Author,
                     changes: OptionInput | None = None,
                     on_start: StartCallback | None = None,
                     on_progress: ProgressCallback | None = None,
                     direct: bool = False) -> Reply:
        """Runs a stored turn's request again as a new turn, optionally with changes (4K).

        Raises:
            NotFoundError: the turn was deleted or never existed.
        """
        record = await self.turn(turn_id)
        if record is None:
            raise NotFoundError(messages.GONE)
        blobs = await self.store.get_blobs([r.sha256 for r in record.refs])
        attachments = tuple(Attachment.from_bytes(r.name, blobs[r.sha256], r.mime_type)
                            for r in record.refs)
        given = (changes or OptionInput()).over(OptionInput.from_dict(record.options))

        def make_plan(sticky: OptionInput, limits: PlanLimits) -> TurnPlan:
            options = resolve(given, sticky, limits.defaults, limits.models)
            return TurnPlan(prompt=record.prompt, given=given, options=options,
                            attachments=attachments)

        # A reroll or a 4K re-run is a one-off: it does not change the thread's settings.
        kind: TurnKind = "4k" if changes and changes.size == "4K" else "reroll"
        return await self._run(record.thread, author, on_start=on_start,
                               on_progress=on_progress, sticky=False, make_plan=make_plan,
                               direct=direct, kind=kind)

    async def delete(self, turn_id: str, *, by: Author | None = None) -> TurnView | None:
        """Removes a turn from its thread's history (the Delete button); audited.

        Returns:
            The turn as it was (its ``platform_refs`` say what to remove), or ``None`` when
            it was already gone.
        """
        record = await self.turn(turn_id)
        if record is None:
            return None
        async with self._thread_lock(record.thread):
            hashes = await self._turn_blobs(turn_id)
            deleted = await self.store.delete_turn(turn_id)
        await self.files.release(hashes)
        if deleted:
            await self.team.deleted(record, by)
        return record if deleted else None

    async def use_candidate(self, turn_id: str, number: int) -> TurnView:
        """Continues the thread from candidate ``number`` of a turn (a Use button).

        Returns:
            The turn as stored now.

        Raises:
            NotFoundError: the turn was deleted. OptionError: no such candidate, it failed,
                or the thread has gone on since.
        """
        record = await self.turn(turn_id)
        if record is None:
            raise NotFoundError(messages.GONE)
        one_shot = caps_for(str(record.options.get("model") or ""), self.limits.models).one_shot
        from bot import variations

        async with self._thread_lock(record.thread):
            return await variations.choose(self.store, record, number, one_shot=one_shot)

    async def _run(self, key: ThreadKey, author: Author, *, on_start: StartCallback | None,
                   on_progress: ProgressCallback | None = None,
                   sticky: bool, make_plan: MakePlan, admission: Admission | None = None,
                   direct: bool = False, kind: TurnKind = "turn", carry: bool = False
                   ) -> Reply:
        task = asyncio.current_task()
        if task:
            self._inflight.add(task)
        queued = time.monotonic()
        try:
            # Let in (policy, quota reserved) on acceptance; refunded below if it fails.
            admission = admission or await self.team.admit(
                key, author, make_plan, limits=self.limits, direct=direct, kind=kind)
            async with self._thread_lock(key):
                return await self._turn(key, author, make_plan, admission, on_start=on_start,
                                        on_progress=on_progress, queued=queued,
                                        sticky=sticky, carry=carry)
        except asyncio.CancelledError as exc:
            await self.team.abandon(admission, None)
            self._emit("error", {"kind": ErrorKind.CANCELLED.value, "key": key})
            raise CancelledTurn(messages.RESTART_CANCELLED) from exc
        except Exception as exc:
            await self.team.abandon(admission, exc)
            self._emit("error", {"kind": str(getattr(exc, "kind", ErrorKind.INTERNAL)),
                                 "key": key})
            raise
        finally:
            if task:
                self._inflight.discard(task)

    async def _turn(self, key: ThreadKey, author: Author, make_plan: MakePlan,
                    admission: Admission, *, on_start: StartCallback | None,
                    on_progress: ProgressCallback | None, queued: float,
                    sticky: bool, carry: bool) -> Reply:
        # The gate bounds how many turns do CPU and database work at once, so a burst of
        # arrivals is spread over several loop iterations instead of stalling one.
        async with self._gate:
            settings = await self.store.settings(key)
            plan = admission.replan(make_plan(settings, admission.limits), settings)
            if carry:  # a new message: an Imagen result before it becomes its reference
                from bot import imagen

                plan = imagen.with_thread_context(
                    plan, await self.store.list_turns(key), self.limits.models,
                    self.settings.max_attachment_bytes, self.image)
        refs = await self._prepare(plan.attachments)
        try:
            return await self._generate(key, author, plan, refs, settings, admission,
                                        on_start=on_start, on_progress=on_progress,
                                        queued=queued, sticky=sticky)
        finally:
            if any(r.notice for r in refs):
                # Big decodes leave freed heap behind; hand it back to the system.
                await asyncio.to_thread(images.release_memory)

    async def _generate(self, key: ThreadKey, author: Author, plan: TurnPlan,
                        refs: list[images.PreparedImage], settings: OptionInput,
                        admission: Admission, *, on_start: StartCallback | None,
                        on_progress: ProgressCallback | None,
                        queued: float, sticky: bool) -> Reply:
        async def busy(ahead: int) -> None:
            if on_progress:
                await on_progress(Progress.busy(ahead))

        # The worker's capacity: a turn starts (and says so) once it has a place at Gemini.
        async with self.capacity.hold(busy):
            if on_start:
                await on_start(TurnStart(key=key, options=plan.options,
                                         waited=time.monotonic() - queued))
            started = time.monotonic()
            made = await self._make(key, plan, refs, on_progress, started)
        elapsed = time.monotonic() - started
        # Once the answer is in, the turn is stored whatever happens: a Cancel (or a
        # shutdown) arriving now must not leave a stored turn reported as "nothing saved".
        reply, cost = await uncancelled(self._commit(
            key, author, plan, refs, settings, made, admission, elapsed=elapsed,
            sticky=sticky))
        made_images = sum(len(c.images) for c in reply.candidates) or len(reply.images)
        self._emit("turn", {"model": plan.options.model, "elapsed": elapsed, "cost": cost,
                            "total": time.monotonic() - queued, "usage": reply.usage,
                            "images": made_images, "key": key})
        if made.stored:  # the next turn finds this one's images on the Files API already
            self.files.upload_later(key, reply.turn_id, plan.options.model)
        return reply

    async def _commit(self, key: ThreadKey, author: Author, plan: TurnPlan,
                      refs: list[images.PreparedImage], settings: OptionInput, made: Made,
                      admission: Admission, *, elapsed: float, sticky: bool
                      ) -> tuple[Reply, float | None]:
        from bot import variations

        async with self._gate:
            reply = await asyncio.to_thread(self._reply, key, made, plan.options, elapsed,
                                            refs, admission.id)
            view = stored_view(reply, author, plan, refs)
            known = known_hashes(refs, reply)
            kept = (await asyncio.to_thread(variations.keep, made.outcomes, made.chosen,
                                            in_history=bool(made.stored), known=known)
                    if made.chosen else None)
            await self.store.commit_turn(NewTurn(
                turn_id=reply.turn_id, key=key, contents=made.stored,
                settings=sticky_settings(settings, plan.given, plan.options) if sticky
                else settings, author_id=author.id, author_name=author.name,
                prompt=plan.prompt, options=dict(view.options), refs=list(view.refs),
                reply=view.reply, model=plan.options.model,
                usage=(made.answer.usage if made.chosen else reply.usage).__dict__,
                images=len(reply.images), created_at=view.created_at, known_hashes=known,
                blobs={**(kept.blobs if kept else {}),
                       **({} if made.stored else image_blobs(reply))},
                also=variations.writer(kept, turn_id=reply.turn_id, key=key,
                                       author_id=author.id, model=plan.options.model,
                                       created_at=view.created_at) if kept else None))
            cost = await self.team.settle(admission, reply)
        return with_view(reply, view), cost

    async def _make(self, key: ThreadKey, plan: TurnPlan, refs: list[images.PreparedImage],
                    on_progress: ProgressCallback | None, started: float) -> Made:
        """The model's side of a turn: one answer, or several candidates (``--count``)."""
        from bot import imagen, variations

        options, notices = plan.options, list(plan.notices)
        if options.caps.one_shot:  # Imagen: no chat, nothing enters the history
            answer, withheld = await imagen.predict(self.session, options, plan.prompt)
            outcomes = variations.split_one_shot(answer) if options.count > 1 else []
            if len(outcomes) < 2:
                return Made(answer, [], notices + withheld)
            chosen = outcomes[0]
            return Made(chosen.answer or answer, [], notices + withheld + [
                variations.notice(outcomes, chosen, one_shot=True)], outcomes, chosen)
        seen: dict[int, ReplyImage] = {}  # images hashed while streaming

        async def ask(model: str, contents: list[types.Content],
                      config: types.GenerateContentConfig) -> Any:
            if options.count == 1:
                return await self._ask(model, contents, config, on_progress, started, seen)
            return await variations.generate_all(self.session, model, contents, config,
                                                 options.count)

        user, result, left_out = await self._turn_requests().send(
            key, plan.prompt, refs, options, limit=self.settings.max_request_bytes, ask=ask)
        if options.count == 1:
            return Made(result, [user, result.content], notices + left_out, seen=seen)
        outcomes = result
        chosen = variations.continuation(outcomes)
        assert chosen.answer is not None
        return Made(chosen.answer, [user, chosen.answer.content], notices + left_out + [
            variations.notice(outcomes, chosen, one_shot=False)], outcomes, chosen)

    async def _ask(self, model: str, contents: list[types.Content],
                   config: types.GenerateContentConfig, on_progress: ProgressCallback | None,
                   started: float, seen: dict[int, ReplyImage]) -> Answer:
        """Streams the answer of a thinking model (so its drafts show while it thinks);
        other models answer in one call."""
        from bot.streaming import stream_answer

        caps = self.limits.models.get(model)
        if caps is None or not caps.thinking:
            return await self.session.generate(model, contents, config)
        streamed = await stream_answer(self.session, model, contents, config,
                                       on_progress=on_progress, started=started)
        if streamed.first_chunk is not None:
            self._emit("first_progress", {"model": model, "seconds": streamed.first_chunk})
        seen.update(streamed.images)
        return streamed.answer

    async def _prepare(self, attachments: tuple[Attachment, ...]
                       ) -> list[images.PreparedImage]:
        limit = self.settings.max_attachment_bytes
        prepared = []
        for attachment in attachments:
            data = await fetch(attachment)
            if len(data) > limit:
                raise AttachmentError(messages.attachment_too_big(attachment.name, len(data),
                                                                  limit))
            # Decoding is bounded by pixels in flight across all turns (memory), and by
            # the gate (CPU); the header tells the pixels without decoding.
            pixels = images.probe_pixels(data, max_pixels=self.settings.max_image_pixels)
            async with self._pixels.hold(pixels), self._gate:
                prepared.append(await asyncio.to_thread(
                    images.prepare_reference, data, attachment.name or "attachment",
                    max_edge=self.settings.max_reference_edge,
                    max_pixels=self.settings.max_image_pixels))
        return prepared

    async def _turn_blobs(self, turn_id: str) -> set[str]:
        records = getattr(self.store, "files", None)
        return await records.turn_blobs(turn_id) if records is not None else set()

    async def _thread_blobs(self, key: ThreadKey) -> set[str]:
        records = getattr(self.store, "files", None)
        return await records.thread_blobs(key) if records is not None else set()

    def _turn_requests(self) -> TurnRequests:
        if self._requests is None:
            assert self.gemini is not None, "a read-only service runs no turns"
            # Imported on the first turn: commands that only read threads stay quick.
            from bot.turn_request import TurnRequests

            self._requests = TurnRequests(self.store, self.gemini, self.files, self._gate,
                                          signatures=self.settings.signature_window)
        return self._requests

    def _reply(self, key: ThreadKey, made: Made, options: Options, elapsed: float,
               refs: list[images.PreparedImage], turn_id: str) -> Reply:
        answer = made.answer
        parts, thoughts = parts_of(answer.content, made.seen)
        notices = [r.notice for r in refs if r.notice] + made.notices
        if not any(p.kind == "image" for p in parts):
            notices.append(messages.NO_IMAGE_NOTICE)
        if self.offline:
            notices.insert(0, messages.OFFLINE_NOTICE)
        reply = Reply(
            turn_id=turn_id, thread=key, parts=tuple(parts), thoughts=tuple(thoughts),
            sources=answer.sources, search_queries=answer.search_queries,
            search_entry_point=answer.search_entry_point, usage=answer.usage,
            model=answer.model_version or options.model, options=options, elapsed=elapsed,
            notices=tuple(notices), offline=self.offline)
        if made.chosen is None:
            return reply
        from bot import variations

        return dataclasses.replace(
            reply, usage=variations.total_usage(made.outcomes), chosen=made.chosen.number,
            candidates=variations.candidates(made.outcomes, parts_of))

    # --- what adapters ask about threads and turns -------------------------------------

    async def is_session(self, key: ThreadKey) -> bool:
        """Whether the thread has a history (or settings) here: whether to answer in it."""
        return await self.store.thread_exists(key) or await self.lines.busy(key)

    async def claim(self, event_id: str) -> bool:
        """Records a platform event id; False when it was seen before (a redelivery)."""
        return await self.store.mark_event(event_id)

    async def turn(self, turn_id: str) -> TurnView | None:
        """A stored turn, or ``None`` when it does not exist or was deleted."""
        record = await self.store.get_turn(turn_id)
        return None if record is None or record.deleted else record

    async def record_posts(self, turn_id: str, refs: dict[str, Any]) -> None:
        """Remembers where an adapter posted a turn's result (message ids, for Delete)."""
        await self.store.set_platform_refs(turn_id, refs)

    async def history(self, key: ThreadKey) -> list[TurnView]:
        """The thread's turns in order (deleted ones left out)."""
        return await self.store.list_turns(key)

    async def thread(self, key: ThreadKey) -> ThreadSummary | None:
        return await self.store.find_thread(key)

    async def threads(self, platform: str | None = None) -> list[ThreadSummary]:
        return await self.store.list_threads(platform)

    async def rename_thread(self, key: ThreadKey, title: str) -> bool:
        return await self.store.rename_thread(key, " ".join(title.split())[:200])

    async def delete_thread(self, key: ThreadKey, *, by: Author | None = None) -> bool:
        """Deletes a thread, its blobs and Gemini files that nothing else uses."""
        async with self._thread_lock(key):
            hashes = await self._thread_blobs(key)
            deleted = await self.store.delete_thread(key)
        await self.files.release(hashes)
        if deleted:
            await self.team.thread_deleted(key, by)
        return deleted

    async def settings_of(self, key: ThreadKey) -> OptionInput:
        """The thread's sticky settings (empty for a new thread)."""
        return await self.store.settings(key)

    async def update_settings(self, key: ThreadKey, given: OptionInput) -> OptionInput:
        """Validates settings as a turn would and stores them normalized over the old ones.

        Raises:
            OptionError: a value the chosen model cannot use, with the valid ones.
        """
        stored = await self.store.settings(key)
        options = resolve(given, stored, self.limits.defaults, self.limits.models)
        updated = sticky_settings(stored, given, options)
        await self.store.save_settings(key, updated)
        return updated

    def effective(self, stored: OptionInput) -> Options:
        """The options a turn with nothing given would use under ``stored`` settings."""
        return resolve(OptionInput(), stored, self.limits.defaults, self.limits.models)

    async def image(self, sha256: str) -> bytes:
        """An image from the history by its hash.

        Raises:
            NotFoundError: no such image.
        """
        return (await self.store.get_blobs([sha256]))[sha256]

    async def usage(self, key: ThreadKey | None = None) -> list[dict[str, Any]]:
        return await self.store.usage_rows(key)

    async def healthy(self) -> bool:
        """Whether the store takes writes now (for ``/healthz``)."""
        return await self.store.writable()

    async def forget_events(self, older_than: float) -> None:
        """Drops event ids older than ``older_than`` seconds (redeliveries come within hours)."""
        await self.store.prune_events(older_than)

    async def sweep_files(self) -> int:
        """Forgets records of Gemini files that have expired; returns how many."""
        return await self.files.sweep()

    # --- internals ---------------------------------------------------------------------

    def place(self, key: ThreadKey) -> LinePlace:
        """Takes the thread's next place in line now, in arrival order, across processes.

        ``async with`` it waits until the turns ahead are over and holds the thread; the
        service's own turns inside it do not queue again (see :mod:`bot.leases`).
        """
        return self.lines.place(key)

    def _thread_lock(self, key: ThreadKey) -> LinePlace:
        return self.lines.place(key)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(event, data)
            except Exception:  # an observer (metrics) must never break a turn
                logger.exception("observer failed")

    async def shutdown(self, grace: float) -> None:
        """Waits up to ``grace`` seconds for turns in flight, then cancels the rest."""
        await drain(self._inflight, grace)
        await self.team.release_all()
        await self.lines.close()
