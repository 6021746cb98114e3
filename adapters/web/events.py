"""A turn as the playground watches it: server-sent events from the request that runs it.

A turn posted with ``Accept: text/event-stream`` is answered with a stream of events as
they happen, then the stored turn:

* ``accepted``: ``{ticket, queued}``; the ticket is what ``POST /api/live/{ticket}/cancel``
  takes;
* ``started``: the settings the turn runs with;
* ``progress``: a place in line, thought text, a draft (as a ``data:`` URL, since it is
  not stored yet), a final part, grounding, usage;
* ``result``: ``{turn}``, as ``GET /api/threads/{id}`` shows it; or ``error``:
  ``{error, kind}``.

The page going away does not stop the turn: it is stored and shows on the next visit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from adapters.web.errors import error_status
from adapters.web.views import turn_json
from bot import messages
from bot.errors import ImagebotError
from bot.model import Reply
from bot.progress import Progress
from bot.service import TurnStart

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"


def wants_events(request: web.Request) -> bool:
    return EVENT_STREAM in request.headers.get("Accept", "")


class EventStream:
    """One server-sent event stream; a page that went away is not an error."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.open = True

    @classmethod
    async def start(cls, request: web.Request) -> EventStream:
        response = web.StreamResponse(headers={
            "Content-Type": EVENT_STREAM, "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # proxies must not hold events back
        await response.prepare(request)
        return cls(response)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        if self.open:
            await self.write(frame(event, data))

    async def write(self, encoded: bytes) -> None:
        """Sends one event already encoded (see :func:`frame`)."""
        if not self.open:
            return
        try:
            await self.response.write(encoded)
        except (ConnectionError, RuntimeError):
            # The page went away; the turn goes on and is stored.
            self.open = False
            logger.info("web playground: the page stopped listening to a turn")

    async def end(self) -> None:
        if self.open:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                self.open = False


def frame(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event on the wire."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def progress_json(event: Progress, settings: str = "") -> dict[str, Any]:
    """A progress event for the page: the stage's label, the status line's words, what
    arrived (a draft's bytes inline, since it is not stored yet)."""
    data: dict[str, Any] = {
        "kind": event.kind, "stage": event.stage,
        "label": messages.STAGES.get(event.stage, event.stage), "status": event.status(settings),
        "elapsed": round(event.elapsed, 3), "drafts": event.drafts}
    if event.kind == "queued":
        data["position"] = event.position
    if event.text:
        data["text"] = event.text
    image = event.image
    if image is not None:
        data["image"] = {"mime_type": image.mime_type, "width": image.width,
                         "height": image.height, "number": event.drafts}
        if event.kind == "thought_image":
            encoded = base64.b64encode(image.data).decode()
            data["image"]["data_url"] = f"data:{image.mime_type};base64,{encoded}"
    if event.sources:
        data["sources"] = [{"title": s.title, "url": s.url} for s in event.sources]
    if event.usage is not None:
        data["usage"] = dict(event.usage.__dict__)
    return data


class WebReporter:
    """The web's side of a turn. Without a stream (a plain JSON request) it only keeps the
    outcome for the response; with one, it sends each step to the page as it happens."""

    def __init__(self, stream: EventStream | None = None, *, ticket: str = "",
                 reword: Callable[[str], str] = str) -> None:
        """
        Args:
            ticket: the turn's ticket, told to the page for its Cancel button.
            reword: puts a failure in the selectors' words (the page has no flags).
        """
        self.stream = stream
        self.ticket = ticket
        self.reword = reword
        self.error: ImagebotError | None = None
        self._settings = ""

    async def working(self, *, queued: bool) -> None:
        await self._send("accepted", {"ticket": self.ticket, "queued": queued})

    async def started(self, start: TurnStart) -> None:
        self._settings = start.options.summary()
        await self._send("started", {"settings": self._settings, "status": start.status(),
                                     "label": messages.STAGES["sending"]})

    async def progress(self, event: Progress) -> None:
        if self.stream is None:
            return
        if event.kind == "thought_image":
            # A draft goes inline as base64 (~1 MB at 1K): encoded off the event loop, which
            # a hundred turns drawing at once would otherwise stall.
            encoded = await asyncio.to_thread(
                lambda: frame("progress", progress_json(event, self._settings)))
            await self.stream.write(encoded)
            return
        await self._send("progress", progress_json(event, self._settings))

    async def finished(self, reply: Reply) -> dict[str, Any]:
        if reply.view is not None:
            await self._send("result", {"turn": turn_json(reply.view)})
        return {}

    async def failed(self, error: ImagebotError) -> None:
        self.error = error
        await self._send("error", {"error": self.reword(error.user_message),
                                   "kind": str(error.kind), "status": error_status(error)})

    async def close(self) -> None:
        """Nothing to clean up; the route ends the stream."""

    async def _send(self, event: str, data: dict[str, Any]) -> None:
        if self.stream is not None:
            await self.stream.send(event, data)
