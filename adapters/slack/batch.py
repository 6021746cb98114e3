"""Batch jobs on Slack: ``/imagine --batch`` (one prompt per line), a mention with
``--batch`` and an attached ``.txt``/``.csv``/``.jsonl`` (attached images are references
for every prompt), the Cancel button, and the poster that puts a finished job's results in
its thread: each image titled with its prompt, failures with their reasons, a summary.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slack_bolt.async_app import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import SlackFile, SlashCommand, thread_key
from adapters.slack.render import escape, section
from adapters.slack.reporter import SLACK_FAILURES, slack_error
from bot.batch import BatchJobView, BatchLineView, BatchSubmission, submitted_text
from bot.errors import ImagebotError
from bot.model import Attachment, Author, ThreadKey
from bot.presentation import error_text
from bot.service import ConversationService

logger = logging.getLogger(__name__)

BATCH_FLAG = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)batch(?!\S)")
CANCEL_ACTION = "imagebot_batch_cancel"
PROMPT_FILE_TYPES = ("text/", "application/json", "application/x-ndjson", "application/jsonl")
PROMPT_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".md")
#: Slack's limit on an upload's initial comment is generous; prompts are cut to fit.
COMMENT_LIMIT = 3500
TITLE_LIMIT = 250
USAGE = ("Usage: `/imagine --batch` followed by one prompt per line (a line of flags alone, "
         "like `--model flash --ar 16:9`, sets them for every prompt). To use a file, mention "
         "me with `--batch` and attach a .txt, .csv or .jsonl of prompts; attached images are "
         "references for every prompt.")


def is_batch(text: str) -> bool:
    return BATCH_FLAG.search(text) is not None


def without_flag(text: str) -> str:
    """The prompts with ``--batch`` taken out (the line breaks kept)."""
    return "\n".join(BATCH_FLAG.sub(" ", line).strip() for line in text.splitlines()).strip()


def is_prompt_file(file: SlackFile) -> bool:
    return (file.mime_type.lower().startswith(PROMPT_FILE_TYPES)
            or file.name.lower().endswith(PROMPT_FILE_SUFFIXES))


def cancel_button(job: BatchJobView) -> dict[str, Any]:
    return {"type": "actions", "elements": [{
        "type": "button", "action_id": CANCEL_ACTION, "value": job.id, "style": "danger",
        "text": {"type": "plain_text", "text": "Cancel batch"},
        "confirm": {"title": {"type": "plain_text", "text": "Cancel this batch?"},
                    "text": {"type": "mrkdwn", "text": "Prompts that finished are still "
                             "posted; the rest are not run (nor charged)."},
                    "confirm": {"type": "plain_text", "text": "Cancel batch"},
                    "deny": {"type": "plain_text", "text": "Keep it"}}}]}


class SlackBatches:
    """Submitting batches from Slack, and posting their results."""

    def __init__(self, client: AsyncWebClient, service: ConversationService,
                 download: Callable[[SlackFile], Awaitable[bytes]],
                 attachment: Callable[[SlackFile], Attachment]) -> None:
        self.client = client
        self.service = service
        self.download = download
        self.attachment = attachment

    async def command(self, command: SlashCommand, author: Author, respond: AsyncRespond) -> None:
        """``/imagine --batch …``: a root message in the channel, the batch in its thread."""
        prompts = without_flag(command.text)
        draft = self._submission(thread_key(command.team, command.channel, ""), author, prompts)
        try:
            plan = await self.service.batches.plan(draft)
        except ImagebotError as exc:
            await _tell(respond, f"{error_text(exc.user_message)}\n{USAGE}")
            return
        try:
            root = await self.client.chat_postMessage(
                channel=command.channel, unfurl_links=False,
                text=f"Batch of {len(plan.lines)} prompts from <@{command.user}>",
                blocks=[section(f"<@{command.user}> submitted a batch of {len(plan.lines)} "
                                "prompts. Results will be posted in this thread.")])
        except SLACK_FAILURES as exc:
            await _tell(respond, f"Could not post here ({slack_error(exc)}). Invite me to "
                                 "the channel first (`/invite @imagebot`).")
            return
        key = thread_key(command.team, command.channel, str(root["ts"]))
        await self.submit(self._submission(key, author, prompts))

    async def message(self, key: ThreadKey, author: Author, text: str,
                      files: Sequence[SlackFile]) -> None:
        """A mention with ``--batch``: typed prompts and/or attached prompt files."""
        prompt_files = []
        for file in files:
            if is_prompt_file(file):
                prompt_files.append((file.name, await self.download(file)))
        images = tuple(self.attachment(f) for f in files if not is_prompt_file(f))
        await self.submit(BatchSubmission(key=key, author=author, text=without_flag(text),
                                          files=tuple(prompt_files), attachments=images))

    async def submit(self, submission: BatchSubmission) -> BatchJobView | None:
        """Submits and says so in the thread (with a Cancel button), or says why not."""
        key = submission.key
        try:
            job, plan = await self.service.batches.submit(submission)
        except ImagebotError as exc:
            await self._post(key, error_text(exc.user_message))
            return None
        text = submitted_text(job, self.service.batches.label(job.model), plan.estimate())
        ts = await self._post(key, text, extra=[cancel_button(job)])
        if ts:
            await self.service.batches.remember_posts(job.id, {"submitted": [key.channel, ts]})
        return job

    async def cancel(self, job_id: str, user: str, may: Callable[[str, str], Awaitable[bool]],
                     respond: AsyncRespond) -> None:
        """The Cancel button: the submitter or a workspace admin."""
        try:
            job = await self.service.batches.job(job_id)
            if not await may(user, job.author.id):
                await _tell(respond, "Only the person who submitted this batch, or a "
                                     "workspace admin, can cancel it.")
                return
            job = await self.service.batches.cancel(job_id)
        except ImagebotError as exc:
            await _tell(respond, exc.user_message)
            return
        await self._post(job.key, f"Batch {job.short} cancelled by <@{user}>. Prompts that "
                         "finished before are posted; the rest are not run.")

    def _submission(self, key: ThreadKey, author: Author, prompts: str) -> BatchSubmission:
        return BatchSubmission(key=key, author=author, text=prompts)

    async def _post(self, key: ThreadKey, text: str, *,
                    extra: list[dict[str, Any]] | None = None) -> str | None:
        try:
            response = await self.client.chat_postMessage(
                channel=key.channel, thread_ts=key.thread, text=text[:3000],
                blocks=[section(escape(text)[:2900]), *(extra or [])], unfurl_links=False)
        except SLACK_FAILURES as exc:
            logger.error("posting about a batch in %s failed: %s", key, slack_error(exc))
            return None
        return str(response["ts"])


class SlackBatchPoster:
    """Posts a finished batch into its Slack thread (the poller's ``BatchPoster``)."""

    def __init__(self, client: AsyncWebClient, service: ConversationService) -> None:
        self.client = client
        self.service = service

    async def post_results(self, job: BatchJobView, lines: Sequence[BatchLineView]) -> None:
        done = [line for line in lines if line.images]
        if done:
            uploads = []
            for line in done:
                for n, image in enumerate(line.images, start=1):
                    ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(image.mime_type, "png")
                    uploads.append({
                        "content": await self.service.image(image.sha256),
                        "filename": f"batch-{job.short}-{line.number:03d}-{n}.{ext}",
                        "title": f"{line.number}. {line.prompt}"[:TITLE_LIMIT],
                        "alt_txt": line.prompt[:1000] or "Generated image"})
            comment = "\n".join(f"*{line.number}.* {escape(line.prompt)}" for line in done)
            await self.client.files_upload_v2(
                file_uploads=uploads, channel=job.key.channel, thread_ts=job.key.thread,
                initial_comment=comment[:COMMENT_LIMIT])
        failed = [line for line in lines if not line.images]
        if failed:
            text = "\n".join(failure_line(line) for line in failed)
            await self.client.chat_postMessage(
                channel=job.key.channel, thread_ts=job.key.thread, text=text[:3000],
                blocks=[section(chunk) for chunk in _chunks(text, 2900)][:40],
                unfurl_links=False)

    async def post_summary(self, job: BatchJobView, text: str) -> dict[str, Any]:
        response = await self.client.chat_postMessage(
            channel=job.key.channel, thread_ts=job.key.thread, text=text,
            blocks=[section(f"*{escape(text)}*")], unfurl_links=False)
        return {"channel": job.key.channel, "messages": [str(response["ts"])]}


def failure_line(line: BatchLineView) -> str:
    mark = "🚫" if line.status == "blocked" else ("⏹️" if line.status == "not_run" else "⚠️")
    reason = line.error or ("not run" if line.status == "not_run" else line.status)
    return f"{mark} *{line.number}.* {escape(line.prompt)} — {escape(reason)}"


def _chunks(text: str, limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for row in text.splitlines():
        if current and len(current) + len(row) + 1 > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{row}" if current else row[:limit]
    if current:
        chunks.append(current)
    return chunks


async def _tell(respond: AsyncRespond, text: str) -> None:
    with contextlib.suppress(*SLACK_FAILURES):
        await respond(text=text, response_type="ephemeral", replace_original=False)
