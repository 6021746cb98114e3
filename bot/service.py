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
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import images, messages
from bot.config import Settings
from bot.errors import (
    AttachmentError,
    CancelledTurn,
    ErrorKind,
    NotFoundError,
)
from bot.files import HistoryFiles
from bot.model import (
    Attachment,
    Author,
    IncomingMessage,
    Reply,
    ReplyImage,
    ReplyPart,
    StoredImage,
    StoredReply,
    ThreadKey,
    ThreadSummary,
    TurnView,
)
from bot.options import OptionInput, Options, resolve
from bot.planning import PlanLimits, TurnPlan, plan_turn, sticky_settings
from bot.store import HistoryStore, NewTurn
from bot.tasks import drain

if TYPE_CHECKING:  # `imagebot threads` and `history` never import google.genai
    from google.genai import types

    from bot.gemini import Answer, GeminiSession
    from bot.turn_request import TurnRequests

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnStart:
    """Told to the adapter when a turn really starts (after waiting for the thread)."""

    key: ThreadKey
    options: Options
    waited: float

    def status(self) -> str:
        return f"Generating with {self.options.summary()}…"


StartCallback = Callable[[TurnStart], Awaitable[None]]


@dataclass
class _ThreadQueue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ConversationService:
    """Runs turns and answers adapters' questions about threads; owns the store."""

    def __init__(self, store: HistoryStore, gemini: GeminiSession | None,
                 settings: Settings) -> None:
        """``gemini`` is None for a service that only reads threads (no turns)."""
        #: The store, for the composition and tests; adapters use the methods below.
        self.store = store
        self.gemini = gemini
        self.settings = settings
        self._threads: dict[ThreadKey, _ThreadQueue] = {}
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._gate = asyncio.Semaphore(4)
        self._pixels = images.PixelBudget()
        self.limits = PlanLimits(defaults=settings.option_defaults, models=settings.models,
                                 max_attachment_bytes=settings.max_attachment_bytes)
        #: History images on Gemini's Files API.
        self.files = HistoryFiles(store, gemini, enabled=settings.use_files_api)
        self._requests: TurnRequests | None = None

    @property
    def offline(self) -> bool:
        return self.gemini is not None and self.gemini.offline

    def queue_depth(self) -> int:
        """Turns running or waiting, across all threads."""
        return sum(q.users for q in self._threads.values())

    # --- turns -------------------------------------------------------------------------

    async def plan(self, key: ThreadKey | None, message: IncomingMessage) -> TurnPlan:
        """Checks a message as its turn would, without side effects (an early answer).

        Args:
            key: the thread, or ``None`` for a message that will open a new one.

        Raises:
            ImagebotError: what the turn would refuse, worded as the turn would.
        """
        sticky = await self.store.settings(key) if key else OptionInput()
        return plan_turn(message.text, message.attachments, ui=message.options, sticky=sticky,
                         limits=self.limits)

    async def handle(self, key: ThreadKey, message: IncomingMessage, *,
                     on_start: StartCallback | None = None) -> Reply:
        """Runs one turn for ``message`` in thread ``key``.

        Inline flags are taken out of the text (they win over the platform's own fields);
        the rest is the prompt. Options given here become the thread's settings.

        Returns:
            The reply, with ``view`` set to the turn as stored.

        Raises:
            ImagebotError: any failure, with a message for the user; history is unchanged.
        """
        return await self._run(key, message.author, on_start=on_start, sticky=True,
                               make_plan=lambda sticky: plan_turn(
                                   message.text, message.attachments, ui=message.options,
                                   sticky=sticky, limits=self.limits))

    async def reroll(self, turn_id: str, *, author: Author,
                     changes: OptionInput | None = None,
                     on_start: StartCallback | None = None) -> Reply:
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

        def make_plan(sticky: OptionInput) -> TurnPlan:
            options = resolve(given, sticky, self.limits.defaults, self.limits.models)
            return TurnPlan(prompt=record.prompt, given=given, options=options,
                            attachments=attachments)

        # A reroll or a 4K re-run is a one-off: it does not change the thread's settings.
        return await self._run(record.thread, author, on_start=on_start, sticky=False,
                               make_plan=make_plan)

    async def delete(self, turn_id: str) -> TurnView | None:
        """Removes a turn from its thread's history (the Delete button).

        Returns:
            The turn as it was (its ``platform_refs`` say what to remove), or ``None`` when
            it was already gone.
        """
        record = await self.turn(turn_id)
        if record is None:
            return None
        async with self._thread_lock(record.thread):
            hashes = await self.store.files.turn_blobs(turn_id)
            deleted = await self.store.delete_turn(turn_id)
        await self.files.release(hashes)
        return record if deleted else None

    async def _run(self, key: ThreadKey, author: Author, *, on_start: StartCallback | None,
                   sticky: bool, make_plan: Callable[[OptionInput], TurnPlan]) -> Reply:
        task = asyncio.current_task()
        if task:
            self._inflight.add(task)
        queued = time.monotonic()
        try:
            async with self._thread_lock(key):
                return await self._turn(key, author, make_plan, on_start=on_start,
                                        queued=queued, sticky=sticky)
        except asyncio.CancelledError as exc:
            self._emit("error", {"kind": ErrorKind.CANCELLED.value, "key": key})
            raise CancelledTurn(messages.RESTART_CANCELLED) from exc
        except Exception as exc:
            kind = getattr(exc, "kind", ErrorKind.INTERNAL)
            self._emit("error", {"kind": str(kind), "key": key})
            raise
        finally:
            if task:
                self._inflight.discard(task)

    async def _turn(self, key: ThreadKey, author: Author,
                    make_plan: Callable[[OptionInput], TurnPlan], *,
                    on_start: StartCallback | None, queued: float, sticky: bool) -> Reply:
        # The gate bounds how many turns do CPU and database work at once, so a burst of
        # arrivals is spread over several loop iterations instead of stalling one.
        async with self._gate:
            settings = await self.store.settings(key)
            plan = make_plan(settings)
        refs = await self._prepare(plan.attachments)
        try:
            return await self._generate(key, author, plan, refs, settings, on_start=on_start,
                                        queued=queued, sticky=sticky)
        finally:
            if any(r.notice for r in refs):
                # Big decodes leave freed heap behind; hand it back to the system.
                await asyncio.to_thread(images.release_memory)

    async def _generate(self, key: ThreadKey, author: Author, plan: TurnPlan,
                        refs: list[images.PreparedImage], settings: OptionInput, *,
                        on_start: StartCallback | None, queued: float, sticky: bool) -> Reply:
        if on_start:
            await on_start(TurnStart(key=key, options=plan.options,
                                     waited=time.monotonic() - queued))
        started = time.monotonic()
        user, answer, notices = await self._turn_requests().send(
            key, plan.prompt, refs, plan.options, limit=self.settings.max_request_bytes)
        elapsed = time.monotonic() - started
        async with self._gate:
            reply = await asyncio.to_thread(self._reply, key, answer, plan.options, elapsed,
                                            refs, notices)
            view = _view(reply, author, plan, refs)
            await self.store.commit_turn(NewTurn(
                turn_id=reply.turn_id, key=key, contents=[user, answer.content],
                settings=sticky_settings(settings, plan.given, plan.options) if sticky
                else settings, author_id=author.id, author_name=author.name,
                prompt=plan.prompt, options=dict(view.options), refs=list(view.refs),
                reply=view.reply, model=plan.options.model, usage=reply.usage.__dict__,
                images=len(reply.images), created_at=view.created_at,
                known_hashes=_known_hashes(refs, reply)))
        self._emit("turn", {"model": plan.options.model, "elapsed": elapsed,
                            "usage": reply.usage, "images": len(reply.images), "key": key})
        return _with_view(reply, view)

    async def _prepare(self, attachments: tuple[Attachment, ...]
                       ) -> list[images.PreparedImage]:
        limit = self.settings.max_attachment_bytes
        prepared = []
        for attachment in attachments:
            data = await attachment.fetch()
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

    def _turn_requests(self) -> TurnRequests:
        if self._requests is None:
            assert self.gemini is not None, "a read-only service runs no turns"
            # Imported on the first turn: commands that only read threads stay quick.
            from bot.turn_request import TurnRequests

            self._requests = TurnRequests(self.store, self.gemini, self.files, self._gate)
        return self._requests

    def _reply(self, key: ThreadKey, answer: Answer, options: Options, elapsed: float,
               refs: list[images.PreparedImage], extra_notices: list[str]) -> Reply:
        parts: list[ReplyPart] = []
        thoughts: list[ReplyPart] = []
        for part in answer.content.parts or ():
            target = thoughts if part.thought else parts
            if part.inline_data is not None and part.inline_data.data:
                target.append(ReplyPart(kind="image", image=_reply_image(part.inline_data)))
            elif part.text:
                target.append(ReplyPart(kind="text", text=part.text))
        notices = [r.notice for r in refs if r.notice] + extra_notices
        if not any(p.kind == "image" for p in parts):
            notices.append(messages.NO_IMAGE_NOTICE)
        if self.offline:
            notices.insert(0, messages.OFFLINE_NOTICE)
        return Reply(
            turn_id=uuid.uuid4().hex, thread=key, parts=tuple(parts), thoughts=tuple(thoughts),
            sources=answer.sources, search_queries=answer.search_queries,
            search_entry_point=answer.search_entry_point, usage=answer.usage,
            model=answer.model_version or options.model, options=options, elapsed=elapsed,
            notices=tuple(notices), offline=self.offline)

    # --- what adapters ask about threads and turns -------------------------------------

    async def is_session(self, key: ThreadKey) -> bool:
        """Whether the thread has a history (or settings) here: whether to answer in it."""
        return await self.store.thread_exists(key)

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

    async def delete_thread(self, key: ThreadKey) -> bool:
        """Deletes a thread, its blobs and Gemini files that nothing else uses."""
        async with self._thread_lock(key):
            hashes = await self.store.files.thread_blobs(key)
            deleted = await self.store.delete_thread(key)
        await self.files.release(hashes)
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

    def _thread_lock(self, key: ThreadKey) -> _LockGuard:
        return _LockGuard(self._threads, key)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(event, data)
            except Exception:  # an observer (metrics) must never break a turn
                logger.exception("observer failed")

    async def shutdown(self, grace: float) -> None:
        """Waits up to ``grace`` seconds for turns in flight, then cancels the rest."""
        await drain(self._inflight, grace)


class _LockGuard:
    """Per-thread FIFO lock whose entry disappears when nobody uses it."""

    def __init__(self, table: dict[ThreadKey, _ThreadQueue], key: ThreadKey) -> None:
        self.table = table
        self.key = key

    async def __aenter__(self) -> None:
        queue = self.table.setdefault(self.key, _ThreadQueue())
        queue.users += 1
        try:
            await queue.lock.acquire()
        except BaseException:
            self._leave(queue)
            raise

    async def __aexit__(self, *exc: object) -> None:
        queue = self.table[self.key]
        queue.lock.release()
        self._leave(queue)

    def _leave(self, queue: _ThreadQueue) -> None:
        queue.users -= 1
        if queue.users == 0:
            self.table.pop(self.key, None)


def _reply_image(blob: types.Blob) -> ReplyImage:
    data = blob.data or b""
    try:
        mime, width, height = images.image_info(data)
    except Exception:  # an unreadable image still gets posted; sizes are informative only
        logger.info("could not read a generated image's size (%d bytes)", len(data))
        mime, width, height = blob.mime_type or "image/png", 0, 0
    return ReplyImage(data=data, mime_type=mime, width=width, height=height,
                      sha256=images.sha256(data))


def _known_hashes(refs: list[images.PreparedImage], reply: Reply) -> dict[int, str]:
    """Digests computed once this turn, by the identity of the bytes (which the Contents
    being stored share), so the store does not hash the same image again."""
    known = {id(r.data): r.sha256 for r in refs}
    for part in (*reply.parts, *reply.thoughts):
        if part.image is not None:
            known[id(part.image.data)] = part.image.sha256
    return known


def _options_dict(options: Options) -> dict[str, Any]:
    return {"model": options.model, "aspect_ratio": options.aspect_ratio, "size": options.size,
            "search": options.search, "image_only": options.image_only}


def _view(reply: Reply, author: Author, plan: TurnPlan,
          refs: list[images.PreparedImage]) -> TurnView:
    return TurnView(
        id=reply.turn_id, thread=reply.thread, author=author, prompt=plan.prompt,
        options=_options_dict(plan.options),
        refs=tuple(StoredImage(r.sha256, r.mime_type, r.name) for r in refs),
        reply=StoredReply.of(reply), created_at=time.time())


def _with_view(reply: Reply, view: TurnView) -> Reply:
    return dataclasses.replace(reply, view=view)
