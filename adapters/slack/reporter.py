"""Shows one turn in its Slack thread: a working reaction, one status message (paced,
with the stage, the elapsed time and a Cancel button), the drafts while the model
thinks, then the result or the error in place of that status message.

Slack failures here never end a turn: a post that still fails after the client's retries
is logged, and a failed upload is reported in the thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.events import upload_message_ts
from adapters.slack.failures import SLACK_FAILURES, slack_error
from adapters.slack.progress import PACE, DraftPosts, PacedStatus
from bot import messages
from bot.errors import ImagebotError
from bot.model import Reply
from bot.progress import Progress, Stage, headline
from bot.service import TurnStart
from bot.tasks import cancel_and_wait

__all__ = ["SLACK_FAILURES", "Posted", "TurnReporter", "slack_error"]

logger = logging.getLogger(__name__)


@dataclass
class Posted:
    """Where a turn's result went; kept with the turn record so Delete can remove it.

    Attributes:
        messages: ts of every message of the result (status, texts, uploads, tail).
        files: uploaded files whose message ts Slack did not report.
    """

    channel: str
    messages: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_refs(self) -> dict[str, Any]:
        return {"channel": self.channel, "messages": self.messages, "files": self.files}


class TurnReporter:
    """The Slack side of one turn in one thread."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str,
                 react_ts: str | None, requester: str, alt: str, ticket: str | None = None,
                 pace: float = PACE) -> None:
        """
        Args:
            ticket: the turn's ticket id, for the status message's Cancel button.
            pace: seconds between updates of the status message.
        """
        self.client = client
        self.alt = alt
        self.channel = channel
        self.thread_ts = thread_ts
        self.react_ts = react_ts
        self.requester = requester
        self.ticket = ticket
        self.status_ts: str | None = None
        self.status = PacedStatus(self._show, pace=pace)
        self.drafts = DraftPosts(client, channel=channel, thread_ts=thread_ts, alt=alt)
        self._stage: Stage = "sending"
        self._settings = ""
        self._thought = ""
        self._draft_count = 0
        self._began: float | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def working(self, *, queued: bool) -> None:
        """Marks the request as seen (a queued turn's place follows as progress)."""
        if self.react_ts:
            await self._reaction("reactions_add")

    async def started(self, start: TurnStart) -> None:
        """Generation started: show it, and keep the elapsed time current."""
        self._settings = start.options.summary()
        self._began = time.monotonic()
        await self.status.update(self._status_post())
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())

    async def progress(self, event: Progress) -> None:
        if event.kind == "queued":
            await self.status.update(render.status_post(event.status(), cancel=self.ticket))
            return
        self._stage, self._draft_count = event.stage, event.drafts
        if event.kind == "thought_text":
            self._thought = headline(event.text)
        if event.kind == "thought_image" and event.image is not None:
            await self.drafts.post(event.image, event.drafts)
        await self.status.update(self._status_post())

    async def failed(self, error: ImagebotError) -> None:
        await self._stop_ticker()
        await self.status.final(render.error_post(error.user_message, error.mentions))
        await self.drafts.remove()

    async def finished(self, reply: Reply) -> dict[str, Any]:
        """Posts the reply in the model's order; the head replaces the status message and
        the drafts go once the result is there.

        Returns:
            Where it went (channel, message ts, file ids), kept for Delete.
        """
        await self._stop_ticker()
        posted = Posted(self.channel)
        head, rest = render.reply_posts(reply, requester=self.requester)
        _remember(posted, await self.status.final(head))
        for post in rest:
            if isinstance(post, render.ImagePost):
                await self._upload(post, reply.turn_id, self.alt, posted)
            else:
                _remember(posted, await self._post(post))
        await self.drafts.remove()
        return posted.as_refs()

    async def close(self) -> None:
        await self._stop_ticker()
        await self.status.close()
        await self.drafts.remove()
        if self.react_ts:
            await self._reaction("reactions_remove")

    def _status_post(self) -> render.TextPost:
        elapsed = time.monotonic() - self._began if self._began is not None else 0.0
        status = messages.live_status(self._stage, elapsed=elapsed, drafts=self._draft_count,
                                      settings=self._settings)
        return render.status_post(status, cancel=self.ticket, thought=self._thought)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.status.pace)
            await self.status.update(self._status_post())

    async def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        await cancel_and_wait(ticker)

    async def _show(self, post: render.TextPost) -> str | None:
        """Updates the status message, or posts it when there is none (or it is gone)."""
        if self.status_ts:
            try:
                await self.client.chat_update(channel=self.channel, ts=self.status_ts,
                                              text=post.text, blocks=post.blocks)
                return self.status_ts
            except SLACK_FAILURES as exc:
                logger.warning("chat.update of the status failed (%s); posting anew",
                               slack_error(exc))
        self.status_ts = await self._post(post)
        return self.status_ts

    async def _post(self, post: render.TextPost) -> str | None:
        try:
            response = await self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=post.text,
                blocks=post.blocks, unfurl_links=False, unfurl_media=False)
        except SLACK_FAILURES as exc:
            logger.error("chat.postMessage in %s failed: %s", self.channel, slack_error(exc))
            return None
        return str(response["ts"])

    async def _upload(self, post: render.ImagePost, turn_id: str, alt: str,
                      posted: Posted) -> None:
        try:
            response = await self.client.files_upload_v2(
                file_uploads=render.upload_items(post, turn_id=turn_id, alt=alt),
                channel=self.channel, thread_ts=self.thread_ts)
        except SLACK_FAILURES as exc:
            logger.error("upload of %d image(s) failed: %s", len(post.images), slack_error(exc))
            _remember(posted, await self._post(
                render.upload_failed_post(len(post.images), slack_error(exc))))
            return
        for file in response.get("files") or ():
            ts = upload_message_ts(file, self.channel)
            if ts is None:
                posted.files.append(str(file["id"]))
            else:
                _remember(posted, ts)

    async def _reaction(self, method: str) -> None:
        # Cosmetic: a missing reaction scope or a deleted message must not stop the turn.
        try:
            await getattr(self.client, method)(channel=self.channel, timestamp=self.react_ts,
                                               name=render.WORKING_REACTION)
        except SLACK_FAILURES as exc:
            logger.info("%s failed: %s", method, slack_error(exc))


def _remember(posted: Posted, ts: str | None) -> None:
    if ts and ts not in posted.messages:
        posted.messages.append(ts)
