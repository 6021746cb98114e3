"""The conversation service: one turn of one thread, from an incoming message to a Reply.

It resolves options, prepares reference images, rebuilds the request from the stored
history, calls Gemini, and commits the turn atomically. Turns in one thread run one at a
time in arrival order; different threads run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from bot import images
from bot.config import Settings
from bot.errors import AttachmentError, CancelledTurn, NotFoundError, PromptError, TooLargeError
from bot.gemini import Answer, GeminiSession, build_config, request_size
from bot.model import (
    Attachment,
    Author,
    IncomingMessage,
    Reply,
    ReplyImage,
    ReplyPart,
    ThreadKey,
)
from bot.options import OptionInput, Options, parse_inline, resolve
from bot.store import HistoryStore, NewTurn, StoredImage
from bot.tasks import drain

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
    """Runs turns. Adapters call :meth:`handle`, :meth:`reroll` and :meth:`delete`."""

    def __init__(self, store: HistoryStore, gemini: GeminiSession, settings: Settings) -> None:
        self.store = store
        self.gemini = gemini
        self.settings = settings
        self._threads: dict[ThreadKey, _ThreadQueue] = {}
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._gate = asyncio.Semaphore(4)

    @property
    def offline(self) -> bool:
        return self.gemini.offline

    def queue_depth(self) -> int:
        """Turns running or waiting, across all threads."""
        return sum(q.users for q in self._threads.values())

    async def handle(self, key: ThreadKey, message: IncomingMessage, *,
                     on_start: StartCallback | None = None,
                     turn_input: OptionInput | None = None) -> Reply:
        """Runs one turn for ``message`` in thread ``key``.

        Inline flags are taken out of the text; the rest is the prompt. Options given here
        become the thread's settings for later turns.

        Raises:
            ImagebotError: any failure, with a message for the user; history is unchanged.
        """
        prompt, inline = parse_inline(message.text)
        given = (turn_input or OptionInput()).over(message.options.over(inline))
        return await self._run(key, message.author, prompt, given, message.attachments,
                               on_start=on_start, sticky=given)

    async def reroll(self, turn_id: str, *, author: Author,
                     changes: OptionInput | None = None,
                     on_start: StartCallback | None = None) -> Reply:
        """Runs a stored turn's request again as a new turn, optionally with changes (4K)."""
        record = await self.store.get_turn(turn_id)
        if record is None or record.deleted:
            raise NotFoundError("That result no longer exists, so it cannot be run again.")
        blobs = await self.store.get_blobs([r.sha256 for r in record.refs])
        attachments = tuple(Attachment.from_bytes(r.name, blobs[r.sha256], r.mime_type)
                            for r in record.refs)
        base = OptionInput.from_dict(record.options)
        given = (changes or OptionInput()).over(base)
        # A reroll or a 4K re-run is a one-off: it does not change the thread's settings.
        return await self._run(record.thread, author, record.prompt, given, attachments,
                               on_start=on_start, sticky=OptionInput())

    async def delete(self, turn_id: str) -> bool:
        """Removes a turn from its thread's history (the Delete button)."""
        record = await self.store.get_turn(turn_id)
        if record is None:
            return False
        async with self._thread_lock(record.thread):
            return await self.store.delete_turn(turn_id)

    async def _run(self, key: ThreadKey, author: Author, prompt: str, given: OptionInput,
                   attachments: tuple[Attachment, ...], *,
                   on_start: StartCallback | None, sticky: OptionInput) -> Reply:
        task = asyncio.current_task()
        if task:
            self._inflight.add(task)
        queued = time.monotonic()
        try:
            async with self._thread_lock(key):
                return await self._turn(key, author, prompt, given, attachments,
                                        on_start=on_start, queued=queued, sticky=sticky)
        except asyncio.CancelledError as exc:
            self._emit("error", {"kind": "cancelled"})
            raise CancelledTurn(
                "The bot was restarting, so this request was cancelled before it finished. "
                "Nothing was saved; send it again.") from exc
        except Exception as exc:
            self._emit("error", {"kind": getattr(exc, "kind", "internal"), "key": key})
            raise
        finally:
            if task:
                self._inflight.discard(task)

    async def _turn(self, key: ThreadKey, author: Author, prompt: str, given: OptionInput,
                    attachments: tuple[Attachment, ...], *, on_start: StartCallback | None,
                    queued: float, sticky: OptionInput) -> Reply:
        # The gate bounds how many turns do CPU and database work at once, so a burst of
        # arrivals is spread over several loop iterations instead of stalling one.
        async with self._gate:
            settings = await self.store.settings(key)
            options = resolve(given, settings, self.settings.option_defaults,
                              self.settings.models)
        if not prompt.strip():
            raise PromptError(
                "The prompt is empty. Say what to draw or what to change"
                + (" in the attached image." if attachments else ".")
                + " Flags alone (like `--ar 16:9`) are not a prompt.")
        refs = await self._prepare(attachments, options)
        if on_start:
            await on_start(TurnStart(key=key, options=options, waited=time.monotonic() - queued))
        started = time.monotonic()
        async with self._gate:
            history = await self.store.load_history(key)
            user = types.Content(role="user", parts=[types.Part(text=prompt)] + [
                types.Part(inline_data=types.Blob(data=r.data, mime_type=r.mime_type))
                for r in refs])
            contents = [*history, user]
            self._check_size(contents, len(history))
            config = build_config(options)
        answer = await self.gemini.generate(options.model, contents, config)
        elapsed = time.monotonic() - started
        async with self._gate:
            reply = await asyncio.to_thread(self._reply, key, answer, options, elapsed, refs)
            await self.store.commit_turn(NewTurn(
                turn_id=reply.turn_id, key=key, contents=[user, answer.content],
                settings=_sticky(settings, sticky, options), author_id=author.id,
                author_name=author.name, prompt=prompt, options=_options_dict(options),
                refs=[StoredImage(r.sha256, r.mime_type, r.name) for r in refs],
                reply=_reply_summary(reply), model=options.model,
                usage=reply.usage.__dict__, images=len(reply.images)))
        self._emit("turn", {"model": options.model, "elapsed": elapsed, "usage": reply.usage,
                            "images": len(reply.images), "key": key})
        return reply

    async def _prepare(self, attachments: tuple[Attachment, ...], options: Options
                       ) -> list[images.PreparedImage]:
        limit = options.caps.max_reference_images
        if len(attachments) > limit:
            raise AttachmentError(
                f"{len(attachments)} images attached, but {options.caps.label} takes at most "
                f"{limit} reference images per message"
                + (". Nano Banana Pro (`--model pro`) takes up to 14." if limit < 14 else ".")
                + " Images made earlier in this thread don't need attaching again.")
        prepared = []
        for attachment in attachments:
            if attachment.size and attachment.size > self.settings.max_attachment_bytes:
                raise AttachmentError(_too_big(attachment.name, attachment.size,
                                               self.settings.max_attachment_bytes))
            data = await attachment.fetch()
            if len(data) > self.settings.max_attachment_bytes:
                raise AttachmentError(_too_big(attachment.name, len(data),
                                               self.settings.max_attachment_bytes))
            prepared.append(await asyncio.to_thread(
                images.prepare_reference, data, attachment.name or "attachment",
                max_edge=self.settings.max_reference_edge,
                max_pixels=self.settings.max_image_pixels))
        return prepared

    def _check_size(self, contents: list[types.Content], history_len: int) -> None:
        size = request_size(contents)
        limit = self.settings.max_request_bytes
        if size <= limit:
            return
        new = request_size(contents[-1:])
        if new > limit or history_len == 0:
            raise TooLargeError(
                f"The attached images add up to {new / 2**20:.1f} MB once encoded, over Gemini's "
                f"{limit / 2**20:.0f} MB request limit. Attach fewer or smaller images.")
        raise TooLargeError(
            f"This thread's history has grown to {size / 2**20:.1f} MB with this message, over "
            f"Gemini's {limit / 2**20:.0f} MB limit for one request. Start a new thread "
            "(attach the image you want to keep working on), or delete earlier results.")

    def _reply(self, key: ThreadKey, answer: Answer, options: Options, elapsed: float,
               refs: list[images.PreparedImage]) -> Reply:
        parts: list[ReplyPart] = []
        thoughts: list[ReplyPart] = []
        for part in answer.content.parts or ():
            target = thoughts if part.thought else parts
            if part.inline_data is not None and part.inline_data.data:
                target.append(ReplyPart(kind="image", image=_reply_image(part.inline_data)))
            elif part.text:
                target.append(ReplyPart(kind="text", text=part.text))
        notices = [r.notice for r in refs if r.notice]
        if not any(p.kind == "image" for p in parts):
            notices.append("No image this time: the model answered in text only. "
                           "Ask for the image explicitly, or try again.")
        if self.offline:
            notices.insert(0, "Offline preview: made by imagebot's offline stand-in, "
                              "not by Gemini.")
        return Reply(
            turn_id=uuid.uuid4().hex, thread=key, parts=tuple(parts), thoughts=tuple(thoughts),
            sources=answer.sources, search_queries=answer.search_queries,
            search_entry_point=answer.search_entry_point, usage=answer.usage,
            model=answer.model_version or options.model, options=options, elapsed=elapsed,
            notices=tuple(notices), offline=self.offline)

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
        mime, width, height = blob.mime_type or "image/png", 0, 0
    return ReplyImage(data=data, mime_type=mime, width=width, height=height,
                      sha256=images.sha256(data))


def _too_big(name: str, size: int, limit: int) -> str:
    return (f"`{name}` is {size / 2**20:.1f} MB; reference images can be at most "
            f"{limit / 2**20:.0f} MB. Resize or compress it and attach it again.")


def _sticky(settings: OptionInput, given: OptionInput, options: Options) -> OptionInput:
    """The thread's settings after this turn: values given now, normalized, stick."""
    # "auto" resets a sticky ratio or size; it resolves to None, so keep the word itself.
    normalized = {name: "auto" if (value := getattr(options, name)) is None else value
                  for name in given.given()}
    return OptionInput.from_dict(normalized).over(settings)


def _options_dict(options: Options) -> dict[str, Any]:
    return {"model": options.model, "aspect_ratio": options.aspect_ratio, "size": options.size,
            "search": options.search, "image_only": options.image_only}


def _part_summary(part: ReplyPart) -> dict[str, Any]:
    if part.image is None:
        return {"kind": "text", "text": part.text}
    image = part.image
    return {"kind": "image", "sha256": image.sha256, "mime_type": image.mime_type,
            "width": image.width, "height": image.height}


def _reply_summary(reply: Reply) -> dict[str, Any]:
    """What a turn record keeps of its reply (images by blob hash), to show it again later."""
    parts = [_part_summary(p) for p in reply.parts]
    return {
        "parts": parts,
        "thoughts": [_part_summary(p) for p in reply.thoughts],
        "images": [p for p in parts if p["kind"] == "image"],
        "texts": reply.texts,
        "sources": [{"title": s.title, "url": s.url} for s in reply.sources],
        "search_queries": list(reply.search_queries),
        "search_entry_point": reply.search_entry_point,
        "notices": list(reply.notices),
        "settings": reply.options.summary() if reply.options else "",
        "usage": reply.usage.__dict__,
        "model": reply.model,
        "elapsed": round(reply.elapsed, 3),
        "offline": reply.offline,
    }
