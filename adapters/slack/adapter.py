"""The Slack adapter: slack-bolt's AsyncApp in front of the conversation service.

Slack traffic arrives over Socket Mode (with ``SLACK_APP_TOKEN``) or as signed HTTP requests
at ``POST /slack/events`` on serve's aiohttp server. Bolt acknowledges first; the work runs
in background tasks this adapter tracks, so ``stop`` can let them finish or cancel them.

What happens where:

* ``events``: payload -> neutral values (thread key, prompt, files), pure.
* ``render``: reply -> Block Kit messages, pure.
* ``reporter``: one turn's status, result and errors in its thread.
* here: routing, dedupe, downloads, buttons and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.download import download
from adapters.slack import render
from adapters.slack.events import (
    PLATFORM,
    ButtonClick,
    SlackFile,
    SlackMessage,
    SlashCommand,
    click_from_payload,
    command_from_payload,
    display_name,
    earlier_thread_files,
    file_hosts,
    is_admin,
    looks_like_html,
    message_from_event,
    prompt_text,
    thread_key,
    verdict,
)
from adapters.slack.reporter import SLACK_FAILURES, TurnReporter, slack_error
from bot.errors import AttachmentError, ImagebotError
from bot.model import Attachment, Author, IncomingMessage, Reply, ThreadKey
from bot.options import OptionInput
from bot.runtime import Core
from bot.service import StartCallback
from bot.store import TurnRecord
from bot.tasks import drain

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
#: How long ``stop`` lets turns in flight post their results before cancelling them.
STOP_GRACE = 10.0
#: Pages of ``conversations.replies`` read when a mention turns a thread into a session.
THREAD_PAGES = 5
STOPPING = ("The bot was restarting, so this request was not started. Nothing was saved; "
            "send it again.")
INTERNAL_ERROR = ("Something went wrong inside imagebot, so this request was not completed. "
                  "Nothing was saved; try again.")

TurnCall = Callable[[StartCallback], Awaitable[Reply]]


class SlackAdapter:
    """Runs imagebot in one Slack workspace."""

    name = "slack"

    def __init__(self, core: Core) -> None:
        settings = core.settings
        if not settings.slack_bot_token:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self.core = core
        self.socket_mode = bool(settings.slack_app_token)
        if not self.socket_mode and not settings.slack_signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN "
                             "for Socket Mode)")
        self.client = AsyncWebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url,
            retry_handlers=[AsyncConnectionErrorRetryHandler(),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                            AsyncServerErrorRetryHandler(max_retry_count=2)])
        self.app = AsyncApp(
            client=self.client, signing_secret=settings.slack_signing_secret or "",
            # Socket Mode traffic is authenticated by the connection, not signed.
            request_verification_enabled=not self.socket_mode,
            process_before_response=False, logger=logging.getLogger(f"{__name__}.bolt"))
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command("/imagine")(self._on_imagine)
        self.app.action(re.compile(r"^imagebot_"))(self._on_click)
        self._socket: AsyncSocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Per thread, the last turn in line; done when it has finished posting.
        self._line: dict[ThreadKey, asyncio.Future[None]] = {}
        self._names: dict[str, str] = {}
        self._hosts = file_hosts(settings.slack_api_url)
        self._duplicates = 0
        self._stopping = False

    # --- lifecycle (the serve Adapter protocol) -------------------------------------------

    def mount(self, app: web.Application) -> None:
        if not self.socket_mode:
            app.router.add_post(EVENTS_PATH, self._http_events)

    async def start(self) -> None:
        self._http()
        if self.socket_mode:
            self._socket = AsyncSocketModeHandler(self.app, self.core.settings.slack_app_token)
            await self._socket.connect_async()
        logger.info("Slack adapter running (%s)",
                    "Socket Mode" if self.socket_mode else f"HTTP at {EVENTS_PATH}")

    async def stop(self) -> None:
        """Stops taking work, lets running turns post for ``STOP_GRACE`` s, cancels the rest."""
        self._stopping = True
        if self._socket is not None:
            await self._socket.close_async()
        await self._drain(STOP_GRACE)
        if self._session is not None:
            await self._session.close()

    def status(self) -> dict[str, Any]:
        connected = True
        if self.socket_mode:
            ws = self._socket.client.current_session if self._socket else None
            connected = ws is not None and not ws.closed
        return {"ok": connected and not self._stopping,
                "mode": "socket" if self.socket_mode else "http", "connected": connected,
                "busy_threads": len(self._line), "tasks": len(self._tasks),
                "duplicates_dropped": self._duplicates}

    async def _http_events(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            # Unacknowledged, Slack delivers it again later, to the next process.
            return web.Response(status=503, text="imagebot is restarting")
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # one bad event must not take the adapter down
            logger.exception("Slack handler failed")

    async def _drain(self, grace: float) -> None:
        await drain(self._tasks, grace)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    # --- listeners: acknowledge, then work in the background -------------------------------

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        self._spawn(self._message(body, context.bot_user_id or ""))

    async def _on_imagine(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                          context: AsyncBoltContext) -> None:
        command = command_from_payload(body)
        prompt = prompt_text(command.text, context.bot_user_id or "")
        if not prompt:
            await ack(text=render.USAGE)
            return
        await ack()
        self._spawn(self._imagine(command, prompt, respond))

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = click_from_payload(body)
        if click is not None:
            self._spawn(self._click(click, respond))

    # --- messages and mentions ----------------------------------------------------------------

    async def _message(self, body: dict[str, Any], bot_user_id: str) -> None:
        message = message_from_event(body, bot_user_id=bot_user_id)
        if message is None:
            return
        decided = verdict(message, bot_user_id=bot_user_id,
                          require_mention=self.core.settings.slack_require_mention)
        if decided == "ignore":
            return
        # A thread whose first turn is still running is already a session.
        session = message.key in self._line or await self.core.store.thread_exists(message.key)
        if decided == "answer_if_session" and not session:
            return
        if not await self._claim(message.claim):
            return
        # A mention in a thread the bot has not been part of brings the thread's images.
        pick_up = message.in_thread and not session
        prompt = prompt_text(message.text, bot_user_id)

        async def call(started: StartCallback) -> Reply:
            files = list(message.files)
            if pick_up:
                files = await self._thread_images(message, bot_user_id) + files
            incoming = IncomingMessage(author=await self._author(message.user), text=prompt,
                                       attachments=tuple(self._attachment(f) for f in files))
            return await self.core.service.handle(message.key, incoming, on_start=started)

        reporter = TurnReporter(self.client, channel=message.channel, thread_ts=message.root_ts,
                                react_ts=message.ts, requester=message.user)
        await self._run(message.key, reporter, call, alt=render.alt_text(prompt))

    async def _thread_images(self, message: SlackMessage, bot_user_id: str) -> list[SlackFile]:
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            for _ in range(THREAD_PAGES):
                page = await self.client.conversations_replies(
                    channel=message.channel, ts=message.root_ts, limit=200, cursor=cursor)
                messages.extend(page.get("messages") or ())
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    break
        except SLACK_FAILURES as exc:
            raise AttachmentError(
                f"Could not read this thread's earlier messages ({slack_error(exc)}), so the "
                "images posted in it were not used. Check that the app has the "
                "channels:history and groups:history scopes, or attach the images "
                "again.") from exc
        return earlier_thread_files(messages, before_ts=message.ts, bot_user_id=bot_user_id)

    # --- /imagine ---------------------------------------------------------------------------

    async def _imagine(self, command: SlashCommand, prompt: str, respond: AsyncRespond) -> None:
        if command.trigger_id and not await self._claim(f"slack:command:{command.trigger_id}"):
            return
        root = render.command_root_post(command.user, command.text)
        try:
            posted = await self.client.chat_postMessage(
                channel=command.channel, text=root.text, blocks=root.blocks,
                unfurl_links=False, unfurl_media=False)
        except SLACK_FAILURES as exc:
            error = slack_error(exc)
            await self._tell(respond, render.not_in_channel_text()
                             if error in ("not_in_channel", "channel_not_found")
                             else f"Could not post here ({error}).")
            return
        root_ts = str(posted["ts"])
        key = thread_key(command.team, command.channel, root_ts)
        author = Author(command.user, command.user_name)

        async def call(started: StartCallback) -> Reply:
            incoming = IncomingMessage(author=author, text=prompt)
            return await self.core.service.handle(key, incoming, on_start=started)

        reporter = TurnReporter(self.client, channel=command.channel, thread_ts=root_ts,
                                react_ts=root_ts, requester=command.user)
        await self._run(key, reporter, call, alt=render.alt_text(prompt))

    # --- buttons ----------------------------------------------------------------------------

    async def _click(self, click: ButtonClick, respond: AsyncRespond) -> None:
        if click.trigger_id and not await self._claim(f"slack:click:{click.trigger_id}"):
            return
        record = await self.core.store.get_turn(click.turn_id)
        if record is None or record.deleted or record.thread.platform != PLATFORM:
            await self._tell(respond, "That result was deleted, so its buttons no longer work.")
            return
        if click.action == "delete":
            await self._delete(record, click.user, respond)
            return
        changes = OptionInput(model="pro", size="4K") if click.action == "4k" else None
        key = record.thread

        async def call(started: StartCallback) -> Reply:
            return await self.core.service.reroll(
                record.id, author=await self._author(click.user), changes=changes,
                on_start=started)

        reporter = TurnReporter(self.client, channel=key.channel, thread_ts=key.thread,
                                react_ts=None, requester=click.user)
        await self._run(key, reporter, call, alt=render.alt_text(record.prompt))

    async def _delete(self, record: TurnRecord, user: str, respond: AsyncRespond) -> None:
        if not await self._may_delete(user, record.author_id):
            await self._tell(respond, "Only the person who asked for this result, or a "
                                      "workspace admin, can delete it.")
            return
        await self.core.service.delete(record.id)
        await self._remove_posts(record.platform_refs)
        await self._tell(respond, "Deleted. Later replies in this thread won't build on it.")

    async def _may_delete(self, user: str, author_id: str) -> bool:
        if user == author_id:
            return True
        try:
            info = await self.client.users_info(user=user)
        except SLACK_FAILURES as exc:
            logger.warning("users.info failed: %s", slack_error(exc))
            return False
        return is_admin(info.get("user") or {})

    async def _remove_posts(self, refs: dict[str, Any]) -> None:
        channel = str(refs.get("channel") or "")
        for ts in refs.get("messages") or ():
            try:
                await self.client.chat_delete(channel=channel, ts=ts)
            except SLACK_FAILURES as exc:
                logger.info("chat.delete %s failed: %s", ts, slack_error(exc))
        for file_id in refs.get("files") or ():
            try:
                await self.client.files_delete(file=file_id)
            except SLACK_FAILURES as exc:
                logger.info("files.delete %s failed: %s", file_id, slack_error(exc))

    # --- one turn ---------------------------------------------------------------------------

    async def _run(self, key: ThreadKey, reporter: TurnReporter, call: TurnCall, *,
                   alt: str) -> None:
        """Runs a turn and shows it; every failure ends up as a message in the thread.

        Turns of one thread queue here in arrival order (the place in line is taken before
        any await), so one turn's result is fully posted before the next one starts.
        """
        ahead = self._line.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line[key] = mine
        try:
            await reporter.working(queued=ahead is not None)
            if ahead is not None:
                await asyncio.wait([ahead])  # not ``await ahead``: cancelling us must not cancel it
            if self._stopping:
                await reporter.failed(STOPPING)
                return
            await self._turn(reporter, call, alt=alt)
        finally:
            mine.set_result(None)
            if self._line.get(key) is mine:
                del self._line[key]
            await reporter.done()

    async def _turn(self, reporter: TurnReporter, call: TurnCall, *, alt: str) -> None:
        try:
            reply = await call(reporter.started)
        except ImagebotError as exc:
            await reporter.failed(exc.user_message)
            return
        except Exception:
            logger.exception("a Slack turn failed")
            await reporter.failed(INTERNAL_ERROR)
            return
        posted = await reporter.finished(reply, alt=alt)
        await self.core.store.set_platform_refs(reply.turn_id, posted.as_refs())

    async def _claim(self, claim: str) -> bool:
        """True the first time ``claim`` is seen (persisted, so also across restarts)."""
        if await self.core.store.mark_event(claim):
            return True
        self._duplicates += 1
        logger.info("dropped a duplicate delivery (%s)", claim)
        return False

    async def _author(self, user: str) -> Author:
        if user not in self._names:
            try:
                info = await self.client.users_info(user=user)
                self._names[user] = display_name(info.get("user") or {})
            except SLACK_FAILURES as exc:
                logger.info("users.info failed: %s", slack_error(exc))
                return Author(user)
        return Author(user, self._names[user])

    @staticmethod
    async def _tell(respond: AsyncRespond, text: str) -> None:
        """An ephemeral answer to the person who clicked or typed the command."""
        with contextlib.suppress(*SLACK_FAILURES):
            await respond(text=text, response_type="ephemeral", replace_original=False)

    # --- attachments ------------------------------------------------------------------------

    def _attachment(self, file: SlackFile) -> Attachment:
        async def fetch() -> bytes:
            return await self._download(file)

        return Attachment(name=file.name, mime_type=file.mime_type, fetch=fetch, size=file.size)

    async def _download(self, file: SlackFile) -> bytes:
        url = file.url or await self._file_url(file)
        token = self.core.settings.slack_bot_token or ""
        data, content_type = await download(
            self._http(), url, name=file.name, allowed_hosts=self._hosts,
            max_bytes=self.core.settings.max_attachment_bytes,
            headers={"Authorization": f"Bearer {token}"})
        if looks_like_html(data, content_type):
            raise AttachmentError(render.files_read_missing(file.name))
        return data

    async def _file_url(self, file: SlackFile) -> str:
        """Some events leave a file's details out; ``files.info`` has them."""
        try:
            info = (await self.client.files_info(file=file.id)).get("file") or {}
        except SLACK_FAILURES as exc:
            if slack_error(exc) == "missing_scope":
                raise AttachmentError(render.files_read_missing(file.name)) from exc
            raise AttachmentError(f"Could not get `{file.name}` from Slack "
                                  f"({slack_error(exc)}). Attach it again.") from exc
        url = info.get("url_private_download") or info.get("url_private")
        if not url:
            raise AttachmentError(f"Slack gave no download address for `{file.name}`.")
        return str(url)
