"""Batch jobs on Discord: ``/batch`` (prompts separated by ``|`` or new lines, or an attached
``.txt``/``.csv``/``.jsonl``; ``image1``/``image2`` are references for every prompt), the
Cancel button, and the poster that puts a finished job's results in its thread: messages of
up to ten images, each listed with its prompt, the failures with their reasons, a summary.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from adapters.discord import render
from adapters.discord.client import BatchCancelButton
from adapters.discord.inbound import (
    BatchRequest,
    FileRef,
    prompts_text,
    thread_key,
    thread_name,
)
from adapters.discord.render import MessagePayload, Upload, fit_upload
from adapters.discord.reporter import THREAD_ARCHIVE_MINUTES, failure_reason, send_kwargs
from bot.batch import BatchJobView, BatchLineView, BatchSubmission, submitted_text
from bot.errors import ImagebotError
from bot.model import Attachment, Author, ImageRef, ReplyImage, ThreadKey
from bot.presentation import split_text
from bot.service import ConversationService

logger = logging.getLogger(__name__)

FILES_PER_MESSAGE = 10
#: Discord's upload limit without boosts, for a channel not in the cache.
DEFAULT_UPLOAD_LIMIT = 10 * 2**20
NOT_YOURS = ("Only the person who submitted this batch, or someone with the Manage Messages "
             "permission, can cancel it.")


class DiscordBatches:
    """Submitting batches from ``/batch``, and cancelling them."""

    def __init__(self, service: ConversationService,
                 attachments: Callable[[tuple[FileRef, ...]], tuple[Attachment, ...]],
                 download: Callable[[FileRef], Awaitable[bytes]],
                 ephemeral: Callable[[discord.Interaction, str], Awaitable[None]]) -> None:
        self.service = service
        self.attachments = attachments
        self.download = download
        self.ephemeral = ephemeral

    async def command(self, interaction: discord.Interaction, request: BatchRequest,
                      session: ThreadKey | None) -> None:
        """Checks, then submits in the session thread, or in a new thread on the answer."""
        channel, guild_id = interaction.channel, interaction.guild_id
        if guild_id is None or not isinstance(channel, discord.abc.Messageable):
            await self.ephemeral(interaction, render.error_message(
                "Use /batch in a server's text channel or thread."))
            return
        author = Author(str(interaction.user.id), interaction.user.display_name)
        files = ((request.file.name, await self.download(request.file)),) if request.file else ()
        draft = BatchSubmission(
            key=session or thread_key(guild_id, int(getattr(channel, "id", 0)), 0),
            author=author, text=prompts_text(request.prompts), files=files,
            attachments=self.attachments(request.images), options=request.options)
        try:
            plan = await self.service.batches.plan(draft)
        except ImagebotError as exc:
            await self.ephemeral(interaction, render.error_message(exc.user_message))
            return
        await interaction.response.defer(thinking=True)
        head = await interaction.edit_original_response(
            content=f"📦 Batch of {len(plan.lines)} prompts from {interaction.user.mention}. "
                    "Results are posted in this thread.")
        key, target = session, channel
        if key is None:
            try:
                thread = await head.create_thread(name=thread_name(plan.lines[0].prompt),
                                                  auto_archive_duration=THREAD_ARCHIVE_MINUTES)
            except discord.HTTPException as exc:
                await interaction.followup.send(render.thread_failed(failure_reason(exc)))
                return
            key, target = thread_key(guild_id, int(getattr(channel, "id", 0)), thread.id), thread
        await self._submit(BatchSubmission(key=key, author=author, text=draft.text, files=files,
                                           attachments=draft.attachments,
                                           options=request.options), target)

    async def _submit(self, submission: BatchSubmission,
                      target: discord.abc.Messageable) -> None:
        try:
            job, plan = await self.service.batches.submit(submission)
        except ImagebotError as exc:
            await _send(target, MessagePayload(content=render.error_message(exc.user_message)))
            return
        text = submitted_text(job, self.service.batches.label(job.model), plan.estimate())
        view = discord.ui.View(timeout=None)
        view.add_item(BatchCancelButton.of(job.id))
        try:
            await target.send(content=text, view=view)
        except discord.HTTPException as exc:
            logger.warning("could not post a batch's submission: %s", failure_reason(exc))

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        """The Cancel button: the submitter, or anyone with Manage Messages."""
        try:
            job = await self.service.batches.job(job_id)
            if (str(interaction.user.id) != job.author.id
                    and not interaction.permissions.manage_messages):
                await self.ephemeral(interaction, NOT_YOURS)
                return
            await interaction.response.defer()
            job = await self.service.batches.cancel(job_id)
        except ImagebotError as exc:
            await self.ephemeral(interaction, exc.user_message)
            return
        if isinstance(interaction.channel, discord.abc.Messageable):
            await _send(interaction.channel, MessagePayload(
                content=f"Batch {job.short} cancelled by {interaction.user.mention}. Prompts "
                        "that finished before are posted; the rest are not run."))


class DiscordBatchPoster:
    """Posts a finished batch into its Discord thread (the poller's ``BatchPoster``)."""

    def __init__(self, bot: discord.Client, service: ConversationService) -> None:
        self.bot = bot
        self.service = service

    async def post_results(self, job: BatchJobView, lines: Sequence[BatchLineView]) -> None:
        """The finished lines' images, in order, as few messages as Discord's limits allow
        (10 files and 25 MiB a message); each line's image is read only when it is next."""
        channel, limit = self._channel(job.key)
        budget = max(render.REQUEST_LIMIT, limit) - render.REQUEST_OVERHEAD
        group = _Group()
        for line in lines:
            if not line.images:
                continue
            uploads, notes = await self._line_uploads(job, line, limit)
            size = sum(len(u.data) for u in uploads)
            if group.headers and (len(group.uploads) + len(uploads) > FILES_PER_MESSAGE
                                  or group.size + size > budget):
                await group.post(channel, limit)
                group = _Group()
            group.add(line, uploads, notes, size)
        if group.headers:
            await group.post(channel, limit)
        failed = [line for line in lines if not line.images]
        if failed:
            text = "\n".join(failure_line(line) for line in failed)
            for chunk in split_text(text, 2000):
                await _send_or_raise(channel, MessagePayload(content=chunk))

    async def _line_uploads(self, job: BatchJobView, line: BatchLineView,
                            limit: int) -> tuple[list[Upload], list[str]]:
        uploads, notes = [], []
        for image in line.images:
            upload, note = fit_upload(await self._image(image), limit, number=line.number,
                                      alt=line.prompt[:1000],
                                      stem=f"batch-{job.short}-{line.number:03d}")
            if upload is not None:
                uploads.append(upload)
            if note:
                notes.append(f"ℹ️ {note}")
        return uploads, notes

    async def post_summary(self, job: BatchJobView, text: str) -> dict[str, Any]:
        channel, _ = self._channel(job.key)
        message = await _send_or_raise(channel, MessagePayload(content=f"**{text}**"))
        return {"messages": [[str(message.channel.id), str(message.id)]]}

    def _channel(self, key: ThreadKey) -> tuple[discord.abc.Messageable, int]:
        found = self.bot.get_channel(int(key.thread))
        if isinstance(found, discord.abc.Messageable):
            guild = getattr(found, "guild", None)
            return found, guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT
        return (self.bot.get_partial_messageable(int(key.thread), guild_id=int(key.workspace)),
                DEFAULT_UPLOAD_LIMIT)

    async def _image(self, image: ImageRef) -> ReplyImage:
        data = await self.service.image(image.sha256)
        return ReplyImage(data=data, mime_type=image.mime_type, width=image.width,
                          height=image.height, sha256=image.sha256)


class _Group:
    """Lines whose images share a message (or, for one line too big alone, a few)."""

    def __init__(self) -> None:
        self.headers: list[str] = []
        self.notes: list[str] = []
        self.uploads: list[Upload] = []
        self.size = 0

    def add(self, line: BatchLineView, uploads: list[Upload], notes: list[str],
            size: int) -> None:
        self.headers.append(f"**{line.number}.** {_clip(line.prompt, 150)}")
        self.uploads += uploads
        self.notes += notes
        self.size += size

    async def post(self, channel: discord.abc.Messageable, limit: int) -> None:
        content = "\n".join(self.headers + self.notes)[:2000]
        batches = render.message_batches(self.uploads, limit) or [()]
        for index, files in enumerate(batches):
            await _send_or_raise(channel, MessagePayload(content=content if not index else "",
                                                         uploads=files))


def failure_line(line: BatchLineView) -> str:
    mark = "🚫" if line.status == "blocked" else ("⏹️" if line.status == "not_run" else "⚠️")
    reason = line.error or ("not run" if line.status == "not_run" else line.status)
    return f"{mark} **{line.number}.** {_clip(line.prompt, 300)} — {reason}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


async def _send(channel: discord.abc.Messageable, payload: MessagePayload) -> None:
    try:
        await channel.send(**send_kwargs(payload))
    except discord.HTTPException as exc:
        logger.warning("could not post about a batch: %s", failure_reason(exc))


async def _send_or_raise(channel: discord.abc.Messageable,
                         payload: MessagePayload) -> discord.Message:
    """A post the poller must know failed (it tries again later)."""
    return await channel.send(**send_kwargs(payload))
