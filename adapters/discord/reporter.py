"""Shows one turn on Discord: a live status, then the result or the error in its place.

The status lives in one "head" message: the deferred reply of a command or button, or a
message the bot posts in the session thread. It shows the stage (thinking, drawing), the
seconds elapsed, what the model thinks about, the latest draft image and a Cancel button;
it is edited when the stage changes or a draft arrives, and every few seconds for the
elapsed time (with a typing indicator). The result's first message replaces it, draft
included; the rest follow in the channel, or in the thread opened on the head message for
a command run in a text channel.

Discord failures never end a turn: a refused upload is reported in place of the files,
and a post that still fails after discord.py's retries is logged.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import discord

from adapters.discord import render
from adapters.discord.client import TurnButton
from adapters.discord.render import MessagePayload
from bot import messages
from bot.errors import ImagebotError
from bot.model import Reply, ReplyImage
from bot.progress import Progress, Stage, headline
from bot.service import TurnStart
from bot.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

#: Seconds between status refreshes; typing lasts 10 s, so this keeps it showing.
TICK = 5.0
#: Threads stay in the channel list for a day of inactivity.
THREAD_ARCHIVE_MINUTES: Final = 1440
Posted = list[tuple[int, int]]
Post = Callable[[MessagePayload], Awaitable[discord.Message]]
#: A posted message (if any) and the payloads that must follow it.
Delivered = tuple[discord.Message | None, tuple[MessagePayload, ...]]


class Head(Protocol):
    """The message that shows the status, then becomes the result's first message."""

    async def show(self, payload: MessagePayload) -> discord.Message: ...


class OriginalResponse:
    """The deferred response of an interaction ("imagebot is thinking…")."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction

    async def show(self, payload: MessagePayload) -> discord.Message:
        return await self.interaction.edit_original_response(**edit_kwargs(payload))


class StatusMessage:
    """A message the bot posts in the thread on first use and edits afterwards."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self.channel = channel
        self.message: discord.Message | None = None

    async def show(self, payload: MessagePayload) -> discord.Message:
        if self.message is None:
            self.message = await self.channel.send(**send_kwargs(payload))
        else:
            self.message = await self.message.edit(**edit_kwargs(payload))
        return self.message


def send_kwargs(payload: MessagePayload) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"content": payload.content or None}
    if payload.uploads:
        kwargs["files"] = files_of(payload)
    if payload.embed:
        kwargs["embed"] = discord.Embed.from_dict(payload.embed)
    if payload.buttons:
        kwargs["view"] = _view(payload)
    return kwargs


def edit_kwargs(payload: MessagePayload) -> dict[str, Any]:
    """Edits replace everything, so a status turns into exactly the payload (its files
    are left alone only when the payload says to keep them)."""
    kwargs: dict[str, Any] = {
        "content": payload.content or None,
        "embed": discord.Embed.from_dict(payload.embed) if payload.embed else None,
        "view": _view(payload) if payload.buttons else None}
    if not payload.keep_files:
        kwargs["attachments"] = files_of(payload)
    return kwargs


def files_of(payload: MessagePayload) -> list[discord.File]:
    return [discord.File(io.BytesIO(u.data), filename=u.filename,
                         description=u.description or None) for u in payload.uploads]


def _view(payload: MessagePayload) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in payload.buttons:
        view.add_item(TurnButton.of(button))
    return view


def _sender(channel: discord.abc.Messageable) -> Post:
    async def post(payload: MessagePayload) -> discord.Message:
        return await channel.send(**send_kwargs(payload))

    return post


def failure_reason(exc: BaseException) -> str:
    """A short, token-free description of a Discord failure for users and logs."""
    if isinstance(exc, discord.HTTPException):
        detail = f", {exc.text[:200]}" if exc.text else ""
        return f"HTTP {exc.status}{detail}"
    return type(exc).__name__


class TurnReporter:
    """The Discord side of one turn."""

    def __init__(self, head: Head, channel: discord.abc.Messageable, *, upload_limit: int,
                 alt: str = "", open_thread: str | None = None, tick: float = TICK,
                 ticket: str | None = None) -> None:
        """
        Args:
            head: where the status shows and the result's first message goes.
            channel: where typing shows and the rest of the result goes.
            upload_limit: the channel's per-file upload limit in bytes.
            alt: the images' description (the prompt without flags).
            open_thread: a thread name, to open a thread on the result's first message
                and post the rest there (a command run in a text channel).
            tick: seconds between status refreshes.
            ticket: the turn's ticket id, for the status's Cancel button.
        """
        self.head = head
        self.channel = channel
        self.upload_limit = upload_limit
        self.alt = alt
        self.open_thread = open_thread
        self.tick = tick
        self.ticket = ticket
        self._ticker: asyncio.Task[None] | None = None
        self._settings = ""
        self._stage: Stage = "sending"
        self._thought = ""
        self._drafts = 0
        self._began = time.monotonic()

    async def working(self, *, queued: bool) -> None:
        await self._typing()

    async def started(self, start: TurnStart) -> None:
        """The core started generating: show it, and keep the elapsed time current."""
        self._began = time.monotonic()
        self._settings = start.options.summary()
        await self._stop_ticker()
        await self._show(self._live())
        self._ticker = asyncio.create_task(self._tick())

    async def progress(self, event: Progress) -> None:
        """A new place in line, stage or draft shows at once; the rest with the next tick."""
        if event.kind == "queued":
            await self._show(render.status_payload(event.status(), ticket=self.ticket))
            return
        changed = event.stage != self._stage
        self._stage, self._drafts = event.stage, event.drafts
        if event.kind == "thought_text":
            changed = changed or headline(event.text) != self._thought
            self._thought = headline(event.text)
        if event.kind == "thought_image" and event.image is not None:
            await self._show(await asyncio.to_thread(self._live, event.image))
        elif changed:
            await self._show(self._live())

    async def failed(self, error: ImagebotError) -> None:
        await self._stop_ticker()
        await self._show_status(render.error_message(error.user_message))

    async def finished(self, reply: Reply) -> dict[str, Any]:
        """Posts the result; returns where every message went, kept for Delete."""
        await self._stop_ticker()
        payloads = await asyncio.to_thread(render.reply_payloads, reply,
                                           upload_limit=self.upload_limit, alt=self.alt)
        posted = await self._post_all(payloads)
        return {"messages": [[str(c), str(m)] for c, m in posted]}

    async def _post_all(self, payloads: Sequence[MessagePayload]) -> Posted:
        posted: Posted = []
        first, pending = await self._post_head(payloads[0])
        target = self.channel
        if first is not None:
            posted.append((first.channel.id, first.id))
            target = await self._thread_on(first) or target
        queue = deque([*pending, *payloads[1:]])
        while queue:
            message, more = await self._deliver(_sender(target), queue.popleft())
            if message is not None:
                posted.append((message.channel.id, message.id))
            queue.extendleft(reversed(more))
        return posted

    async def close(self) -> None:
        await self._stop_ticker()

    async def _post_head(self, payload: MessagePayload) -> Delivered:
        message, more = await self._deliver(self.head.show, payload)
        if message is None:
            # The head is gone (deleted, or its interaction expired): post the result anew.
            message, more = await self._deliver(_sender(self.channel), payload)
        return message, more

    async def _deliver(self, post: Post, payload: MessagePayload) -> Delivered:
        """Posts one payload; a refused upload is posted again as text saying so.

        Returns:
            The message (``None`` when it could not be posted), and what still has to
            follow it: the upload-failure note, when it did not fit in the message.
        """
        try:
            return await post(payload), ()
        except discord.HTTPException as exc:
            reason = failure_reason(exc)
            if not payload.uploads:
                logger.error("posting a result message failed: %s", reason)
                return None, ()
            logger.error("upload of %d image(s) failed: %s", len(payload.uploads), reason)
            fallback, *more = payload.without_uploads(
                render.upload_failed(len(payload.uploads), reason))
        try:
            return await post(fallback), tuple(more)
        except discord.HTTPException as exc:
            logger.error("posting the upload failure failed too: %s", failure_reason(exc))
            return None, tuple(more)

    async def _thread_on(self, message: discord.Message) -> discord.Thread | None:
        if not self.open_thread:
            return None
        try:
            return await message.create_thread(name=self.open_thread,
                                               auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            reason = failure_reason(exc)
            logger.warning("could not open a thread on the result: %s", reason)
            try:
                await self.channel.send(render.thread_failed(reason))
            except discord.HTTPException as again:
                logger.warning("could not say so either: %s", failure_reason(again))
            return None

    def _live(self, draft: ReplyImage | None = None) -> MessagePayload:
        status = messages.live_status(self._stage, elapsed=time.monotonic() - self._began,
                                      drafts=self._drafts, settings=self._settings)
        return render.status_payload(status, ticket=self.ticket, thought=self._thought,
                                     draft=draft, number=self._drafts,
                                     upload_limit=self.upload_limit)

    async def _show_status(self, text: str) -> None:
        await self._show(MessagePayload(content=text))

    async def _show(self, payload: MessagePayload) -> None:
        try:
            await self.head.show(payload)
        except discord.HTTPException as exc:
            logger.warning("status update failed: %s", failure_reason(exc))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self._typing()
            await self._show(self._live())

    async def _typing(self) -> None:
        # Cosmetic: a missing permission must not stop the turn.
        try:
            await self.channel.typing()
        except discord.HTTPException as exc:
            logger.info("typing indicator failed: %s", failure_reason(exc))

    async def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        await cancel_and_wait(ticker)
