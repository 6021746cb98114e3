"""Shows one turn in its Slack thread: a working reaction, one status message, then the
result or the error in place of that status message.

Slack failures here never end a turn: a post that still fails after the client's retries
is logged, and a failed upload is reported in the thread instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.events import upload_message_ts
from bot import messages
from bot.errors import ImagebotError
from bot.model import Reply
from bot.service import TurnStart

logger = logging.getLogger(__name__)

#: What a Slack call can raise once the client's retry handlers gave up.
SLACK_FAILURES = (SlackClientError, aiohttp.ClientError, TimeoutError)


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


def slack_error(exc: BaseException) -> str:
    """A short name for a Slack failure, for the user and the log (never the request)."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__


class TurnReporter:
    """The Slack side of one turn in one thread."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str,
                 react_ts: str | None, requester: str, alt: str) -> None:
        self.client = client
        self.alt = alt
        self.channel = channel
        self.thread_ts = thread_ts
        self.react_ts = react_ts
        self.requester = requester
        self.status_ts: str | None = None

    async def working(self, *, queued: bool) -> None:
        """Marks the request as seen; says so when it waits behind another turn."""
        if self.react_ts:
            await self._reaction("reactions_add")
        if queued:
            await self._show(render.status_post(messages.QUEUED))

    async def started(self, start: TurnStart) -> None:
        await self._show(render.status_post(start.status()))

    async def failed(self, error: ImagebotError) -> None:
        await self._show(render.error_post(error.user_message, error.mentions))

    async def finished(self, reply: Reply) -> dict[str, Any]:
        """Posts the reply in the model's order; the head replaces the status message.

        Returns:
            Where it went (channel, message ts, file ids), kept for Delete.
        """
        posted = Posted(self.channel)
        head, rest = render.reply_posts(reply, requester=self.requester)
        _remember(posted, await self._show(head))
        for post in rest:
            if isinstance(post, render.ImagePost):
                await self._upload(post, reply.turn_id, self.alt, posted)
            else:
                _remember(posted, await self._post(post))
        return posted.as_refs()

    async def close(self) -> None:
        if self.react_ts:
            await self._reaction("reactions_remove")

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
