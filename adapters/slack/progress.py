"""Live progress in a Slack thread: a paced status message, and the drafts while thinking.

Slack allows about one ``chat.update`` of a message every couple of seconds, so the status
is updated at most once per ``pace`` seconds: the latest wanted content waits for the next
slot and replaces anything older still waiting. Drafts are posted in the thread as they
arrive and removed once the result (or the failure) is posted: the result replaces them,
and its **Drafts** button shows them again, privately, to whoever clicks it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_bolt.async_app import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.events import upload_message_ts
from adapters.slack.failures import SLACK_FAILURES, slack_error
from adapters.slack.render import TextPost
from bot import messages
from bot.model import ReplyImage, TurnView
from bot.planning import display_prompt
from bot.service import ConversationService
from bot.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

#: Seconds between progress updates of one status message (Slack: about one per 2-3 s).
#: The outcome does not wait for its slot: one update sooner is within Slack's bursts.
PACE = 2.5

Show = Callable[[TextPost], Awaitable[str | None]]


class PacedStatus:
    """One status message, updated at most once every ``pace`` seconds."""

    def __init__(self, show: Show, *, pace: float = PACE) -> None:
        self._show = show
        self.pace = pace
        self._last = float("-inf")
        self._pending: TextPost | None = None
        self._timer: asyncio.Task[None] | None = None
        # One send at a time: a status posted for the first time must be known (its ts)
        # before the next update, or it would be posted twice.
        self._sending = asyncio.Lock()
        self.updates = 0

    async def update(self, post: TextPost) -> None:
        """Shows ``post`` now if its slot has come, else as soon as it comes (unless a
        newer one replaces it first)."""
        if self._timer is None and time.monotonic() - self._last >= self.pace:
            await self._send(post)
            return
        self._pending = post
        if self._timer is None:
            self._timer = asyncio.create_task(self._later())

    async def final(self, post: TextPost) -> str | None:
        """Shows the turn's outcome in place of the status, dropping what still waits."""
        await self.close()
        return await self._send(post)

    async def close(self) -> None:
        self._pending = None
        timer, self._timer = self._timer, None
        await cancel_and_wait(timer)

    async def _later(self) -> None:
        await asyncio.sleep(max(0.0, self._last + self.pace - time.monotonic()))
        post, self._pending = self._pending, None
        self._timer = None
        if post is not None:
            await self._send(post)

    async def _send(self, post: TextPost) -> str | None:
        async with self._sending:
            self._last = time.monotonic()
            self.updates += 1
            return await self._show(post)


@dataclass(frozen=True)
class _Draft:
    file_id: str
    message_ts: str | None


class DraftPosts:
    """The drafts of one turn, posted in its thread while the model thinks."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str,
                 alt: str) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.alt = alt
        self._posted: list[_Draft] = []

    async def post(self, image: ReplyImage, number: int) -> None:
        """Uploads a draft into the thread (a failure is logged: drafts are extras)."""
        try:
            response = await self.client.files_upload_v2(
                file_uploads=[render.draft_upload(image, number, alt=self.alt)],
                channel=self.channel, thread_ts=self.thread_ts,
                initial_comment=messages.draft_caption(number))
        except SLACK_FAILURES as exc:
            logger.info("posting draft %d failed: %s", number, slack_error(exc))
            return
        for file in response.get("files") or ():
            self._posted.append(_Draft(str(file["id"]), upload_message_ts(file, self.channel)))

    async def remove(self) -> None:
        """Takes the drafts out of the thread (the result, or the failure, is there now)."""
        posted, self._posted = self._posted, []
        for draft in posted:
            if draft.message_ts:
                await self._call("chat_delete", channel=self.channel, ts=draft.message_ts)
            await self._call("files_delete", file=draft.file_id)

    async def _call(self, method: str, **kwargs: str) -> None:
        try:
            await getattr(self.client, method)(**kwargs)
        except SLACK_FAILURES as exc:
            logger.info("%s of a draft failed: %s", method, slack_error(exc))


async def show_drafts(client: AsyncWebClient, service: ConversationService, record: TurnView,
                      respond: AsyncRespond) -> None:
    """**Drafts**: a result's drafts, privately to whoever clicked. They are uploaded once,
    unshared, and remembered with the turn (so its Delete removes them too)."""
    refs = dict(record.platform_refs)
    file_ids = [str(f) for f in refs.get("drafts") or ()]
    if not file_ids:
        file_ids = await _upload_drafts(client, service, record)
        if file_ids:
            refs["drafts"] = file_ids
            refs["files"] = [*(refs.get("files") or ()), *file_ids]
            await service.record_posts(record.id, refs)
    post = render.drafts_post(file_ids) if file_ids else TextPost(text=messages.NO_DRAFTS)
    try:
        await respond(text=post.text, blocks=post.blocks or None, response_type="ephemeral",
                      replace_original=False)
    except SLACK_FAILURES as exc:
        logger.info("could not show the drafts: %s", slack_error(exc))


async def _upload_drafts(client: AsyncWebClient, service: ConversationService,
                         record: TurnView) -> list[str]:
    drafts = [p.image for p in record.reply.thoughts if p.image is not None]
    if not drafts:
        return []
    uploads = []
    for number, ref in enumerate(drafts, start=1):
        image = ReplyImage(data=await service.image(ref.sha256), mime_type=ref.mime_type,
                           width=ref.width, height=ref.height, sha256=ref.sha256)
        uploads.append(render.draft_upload(image, number, alt=display_prompt(record.prompt)))
    try:
        response = await client.files_upload_v2(file_uploads=uploads)
    except SLACK_FAILURES as exc:
        logger.warning("uploading the drafts failed: %s", slack_error(exc))
        return []
    return [str(f["id"]) for f in response.get("files") or ()]
