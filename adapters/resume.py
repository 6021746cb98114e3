"""Turns taken over from a worker that died mid-turn.

Every turn an adapter submits with a :class:`~adapters.turns.TurnDescription` stores that
request with its ticket in the thread's line. When the worker running (or queueing) the
turn dies, its ticket stops being renewed and becomes an orphan (:mod:`bot.leases`). Each
``serve`` worker watches for orphans; for a platform it serves, it takes the ticket over
(one worker wins the store's conditional update) and runs the turn through that platform's
:class:`~adapters.turns.TurnRunner`, with a reporter rebuilt from the request, in the
ticket's place in the line. The result says that the turn was resumed.

A turn the dead worker had already stored (killed after the store's commit, before its
result was posted) is not generated again: its stored reply is posted. Orphans of a
platform this worker does not serve are left for a worker that does; one nobody takes is
dropped when its adoption window (one more lease) ends. CLI turns carry no request: a CLI
process that dies is not resumed by ``serve`` (its user sees it die and runs it again).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from adapters.turns import Reporter, Ticket, TurnCall, TurnDescription, TurnHooks, TurnRunner
from bot.errors import ImagebotError
from bot.leases import Place, ThreadLines, line_key
from bot.model import (
    Author,
    IncomingMessage,
    Reply,
    ReplyImage,
    ReplyPart,
    ThreadKey,
    TurnView,
)
from bot.progress import Progress
from bot.service import ConversationService, TurnStart
from bot.store_api import Orphan

logger = logging.getLogger(__name__)

RESUMED = "This turn was resumed by another worker after the one running it stopped."


@runtime_checkable
class Resumable(Protocol):
    """An adapter that can run a turn from its stored request."""

    runner: TurnRunner

    def resumed(self, key: ThreadKey, request: TurnDescription, ticket: Ticket
                ) -> tuple[Reporter, TurnCall] | None | Awaitable[tuple[Reporter, TurnCall] | None]:
        """The reporter and call of a taken-over turn (``None``: it cannot be run here);
        a coroutine function too (to look up the workspace's token first)."""


class Resumer:
    """Watches the lines for orphans and hands each one to the adapter of its platform."""

    def __init__(self, service: ConversationService, lines: ThreadLines,
                 adapters: dict[str, Resumable]) -> None:
        self.service = service
        self.lines = lines
        self.adapters = adapters
        self.resumed = 0

    def start(self) -> None:
        if self.adapters:
            self.lines.watch(self.offer)

    async def offer(self, orphan: Orphan) -> None:
        """Takes ``orphan`` over when this worker serves its platform (else leaves it)."""
        key = line_key(orphan.line)
        try:
            request = TurnDescription.from_json(orphan.request)
        except (ValueError, TypeError):
            logger.warning("an orphaned turn of %s has an unreadable request", orphan.line)
            return
        adapter = self.adapters.get(request.platform)
        if key is None or adapter is None or adapter.runner.stopping:
            return
        place = await self.lines.adopt(orphan)
        if place is None:
            return  # another worker got it
        try:
            await self._run(adapter, key, request, orphan, place)
        except BaseException:
            await place.release()
            raise

    async def _run(self, adapter: Resumable, key: ThreadKey, request: TurnDescription,
                   orphan: Orphan, place: Place) -> None:
        ticket = Ticket.new(request.requester)
        built = adapter.resumed(key, request, ticket)
        if inspect.isawaitable(built):
            built = await built
        if built is None:
            logger.warning("could not rebuild an orphaned %s turn of %s; dropped",
                           request.platform, key)
            await place.release()
            return
        reporter, call = built
        stored = await self._stored(key, request, orphan)
        if stored is not None:
            logger.info("the orphaned turn of %s was stored already; posting it", key)
            call = self._replay(stored)
        self.resumed += 1
        adapter.runner.resume(key, ResumedReporter(reporter), call, place, ticket)

    async def _stored(self, key: ThreadKey, request: TurnDescription,
                      orphan: Orphan) -> TurnView | None:
        """The turn the dead worker stored but did not post, if it got that far.

        The thread's turns run one at a time, so a turn by the same requester with the
        same prompt, stored after the ticket was taken and never posted, is this one.
        (Only a turn ahead of it with the very same prompt and requester whose posting
        failed entirely, or a web turn, which keeps no posts, could be taken for it.)
        """
        try:
            prompt = (await self.service.plan(key, IncomingMessage(
                author=Author(request.requester), text=request.text))).prompt
        except ImagebotError:
            return None  # a request its turn refuses was never stored
        for view in reversed(await self.service.history(key)):
            if view.created_at < orphan.joined_at:
                break
            if (view.author.id == request.requester and not view.platform_refs
                    and view.prompt == prompt):
                return view
        return None

    def _replay(self, view: TurnView) -> TurnCall:
        async def call(hooks: TurnHooks) -> Reply:
            return await stored_reply(self.service, view)

        return call


async def stored_reply(service: ConversationService, view: TurnView) -> Reply:
    """A stored turn as the reply it was (images fetched from the history's blobs)."""
    parts = []
    for part in view.reply.parts:
        if part.image is None:
            parts.append(ReplyPart("text", text=part.text))
            continue
        ref = part.image
        data = await service.image(ref.sha256)
        parts.append(ReplyPart("image", image=ReplyImage(
            data=data, mime_type=ref.mime_type, width=ref.width, height=ref.height,
            sha256=ref.sha256)))
    stored = view.reply
    return Reply(turn_id=view.id, thread=view.thread, parts=tuple(parts),
                 sources=stored.sources, search_queries=stored.search_queries,
                 search_entry_point=stored.search_entry_point, usage=stored.usage,
                 model=stored.model, elapsed=stored.elapsed, notices=stored.notices,
                 offline=stored.offline, view=view)


class ResumedReporter:
    """A taken-over turn's reporter: its result says that it was resumed."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    async def working(self, *, queued: bool) -> None:
        await self.inner.working(queued=queued)

    async def started(self, start: TurnStart) -> None:
        await self.inner.started(start)

    async def progress(self, event: Progress) -> None:
        await self.inner.progress(event)

    async def finished(self, reply: Reply) -> dict[str, Any]:
        return await self.inner.finished(
            dataclasses.replace(reply, notices=(*reply.notices, RESUMED)))

    async def failed(self, error: ImagebotError) -> None:
        await self.inner.failed(error)

    async def close(self) -> None:
        await self.inner.close()
