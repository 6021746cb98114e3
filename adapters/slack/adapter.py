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
import contextvars
import logging
import re
from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.download import download
from adapters.slack import render, resume
from adapters.slack.admin import SlackAdmin
from adapters.slack.batch import CANCEL_ACTION as BATCH_CANCEL
from adapters.slack.batch import USAGE as BATCH_USAGE
from adapters.slack.batch import SlackBatches, SlackBatchPoster, is_batch, without_flag
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
from adapters.slack.library_logs import bolt_logger
from adapters.slack.oauth import mount_oauth, oauth_settings
from adapters.slack.progress import PACE, show_drafts
from adapters.slack.reporter import SLACK_FAILURES, TurnReporter, slack_error
from adapters.slack.signing import Refused, refuse, signed_request
from adapters.turns import Reporter, Ticket, TurnCall, TurnDescription, TurnHooks, TurnRunner
from bot import messages
from bot.errors import AttachmentError, ErrorKind, ImagebotError
from bot.model import Attachment, Author, IncomingMessage, Reply, ThreadKey, TurnView
from bot.options import OptionInput
from bot.planning import display_prompt
from bot.runtime import Core

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
#: The Web API client of the request being handled (set by each listener; tasks it spawns
#: inherit it), so one adapter serves every workspace installed through OAuth.
_workspace_client: contextvars.ContextVar[AsyncWebClient | None] = contextvars.ContextVar(
    "imagebot_slack_client", default=None)
#: Pages of ``conversations.replies`` read when a mention turns a thread into a session.
THREAD_PAGES = 5
#: How long ``start`` may take to reach Slack in Socket Mode before giving up.
CONNECT_TIMEOUT = 30.0


class SlackAdapter:
    """Runs imagebot in one Slack workspace."""

    name = "slack"

    def __init__(self, core: Core, *, connect_timeout: float = CONNECT_TIMEOUT,
                 pace: float = PACE) -> None:
        """
        Args:
            core: the running core.
            connect_timeout: seconds ``start`` may take to connect in Socket Mode.
            pace: seconds between progress updates of a status message.
        """
        settings = core.settings
        if not settings.slack_bot_token and not settings.slack_oauth:
            raise ValueError("SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET) "
                             "is not set")
        self.core = core
        self.service = core.service
        self.runner = TurnRunner(core.service, name="slack")
        self.connect_timeout = connect_timeout
        self.pace = pace
        self.socket_mode = bool(settings.slack_app_token)
        if not self.socket_mode and not settings.slack_signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN "
                             "for Socket Mode)")
        self.client = AsyncWebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url,
            retry_handlers=[AsyncConnectionErrorRetryHandler(),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                            AsyncServerErrorRetryHandler(max_retry_count=2)])
        # Socket Mode traffic is authenticated by the connection, not signed; HTTP requests
        # are checked by ``signed_request`` before bolt (which checks them again).
        self._verifier = (None if self.socket_mode
                          else SignatureVerifier(settings.slack_signing_secret or ""))
        # Multi-workspace: bolt finds each request's workspace bot token in the database.
        oauth = oauth_settings(settings, core.installations) if settings.slack_oauth else None
        self.app = AsyncApp(
            client=self.client, signing_secret=settings.slack_signing_secret or "",
            oauth_settings=oauth, request_verification_enabled=not self.socket_mode,
            process_before_response=False, logger=bolt_logger(f"{__name__}.bolt"))
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command("/imagine")(self._on_imagine)
        # Batches (adapters.slack.batch); registered before the catch-all button listener.
        self.batches = SlackBatches(self.client, self.service, self._download, self._attachment)
        self.batch_poster = SlackBatchPoster(self.client, self.service)
        self.app.action(BATCH_CANCEL)(self._on_batch_cancel)
        self.app.action(re.compile(r"^imagebot_"))(self._on_click)
        SlackAdmin(self).register(self.app)  # /imagebot usage | settings, settings menus
        self._socket: AsyncSocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._names: dict[str, str] = {}
        self._hosts = file_hosts(settings.slack_api_url)

    # --- lifecycle (the serve Adapter protocol) -------------------------------------------

    def mount(self, app: web.Application) -> None:
        if self.core.settings.slack_oauth:
            mount_oauth(app, self.app)
        if not self.socket_mode:
            app.router.add_post(EVENTS_PATH, self._http_events)

    async def start(self) -> None:
        """Connects Socket Mode (HTTP mode has nothing to connect).

        Raises:
            ImagebotError: Slack unreachable, the app token refused, or no connection
                within ``connect_timeout`` (``ErrorKind.STARTUP``).
        """
        self._http()
        try:
            if self.socket_mode:
                await self._connect_socket()
        except BaseException:  # a failure, or a signal cancelling start-up
            await self._disconnect()
            raise
        logger.info("Slack adapter running (%s)",
                    "Socket Mode" if self.socket_mode else f"HTTP at {EVENTS_PATH}")

    async def stop(self) -> None:
        """Stops taking work, lets running turns post for ``STOP_GRACE`` s, cancels the rest."""
        self.runner.stopping = True
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.runner.stop()
        await self._disconnect()

    async def _connect_socket(self) -> None:
        token = self.core.settings.slack_app_token or ""
        where = self.core.settings.slack_api_url
        self._socket = AsyncSocketModeHandler(self.app, token)
        try:
            async with asyncio.timeout(self.connect_timeout):
                # One call first: the SDK's connect() retries an unreachable Slack or a
                # refused token forever, with a traceback every ~11 s.
                await self.client.apps_connections_open(app_token=token)
                await self._socket.connect_async()
        except SlackApiError as exc:
            raise ImagebotError(
                f"Slack refused SLACK_APP_TOKEN ({slack_error(exc)}). Create an app-level "
                "token with the connections:write scope (Basic Information > App-Level "
                "Tokens).", kind=ErrorKind.STARTUP) from None
        except TimeoutError:
            raise ImagebotError(
                f"Could not connect to Slack Socket Mode via {where} within "
                f"{self.connect_timeout:g}s. Check the network and SLACK_API_URL.",
                kind=ErrorKind.STARTUP) from None
        except SLACK_FAILURES as exc:
            raise ImagebotError(
                f"Could not reach Slack at {where} ({slack_error(exc)}). Check the network "
                "and SLACK_API_URL.", kind=ErrorKind.STARTUP) from None

    async def _disconnect(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> dict[str, Any]:
        connected = True
        if self.socket_mode:
            ws = self._socket.client.current_session if self._socket else None
            connected = ws is not None and not ws.closed
        return {"ok": connected and not self.runner.stopping,
                "mode": "socket" if self.socket_mode else "http", "connected": connected,
                **self.runner.status()}

    async def _http_events(self, request: web.Request) -> web.StreamResponse:
        if self.runner.stopping:
            # Unacknowledged, Slack delivers it again later, to the next process.
            return web.Response(status=503, text="imagebot is restarting")
        assert self._verifier is not None  # mounted in HTTP mode only
        try:
            bolt_request = await signed_request(request, self._verifier)
        except Refused as refused:
            return refuse(request, refused)
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    # --- listeners: acknowledge, then work in the background -------------------------------

    def _web(self) -> AsyncWebClient:
        """The Web API client of the workspace whose request is being handled (its own bot
        token when installed through OAuth), else the configured one."""
        return _workspace_client.get() or self.client

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        _workspace_client.set(context.client)
        self.runner.spawn(self._message(body, context.bot_user_id or ""))

    async def _on_imagine(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                          context: AsyncBoltContext) -> None:
        _workspace_client.set(context.client)
        command = command_from_payload(body)
        prompt = prompt_text(command.text, context.bot_user_id or "")
        if is_batch(prompt):
            if not without_flag(prompt):
                await ack(text=BATCH_USAGE)
                return
            await ack()
            self.runner.spawn(self._batch_command(command, respond))
            return
        if not prompt:
            await ack(text=render.USAGE)
            return
        await ack()
        self.runner.spawn(self._imagine(command, prompt, respond))

    async def _on_batch_cancel(self, ack: AsyncAck, body: dict[str, Any],
                               respond: AsyncRespond) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        user = str((body.get("user") or {}).get("id") or "")
        self.runner.spawn(self.batches.cancel(str(action.get("value") or ""), user,
                                              self._may_delete, respond))

    async def _batch_command(self, command: SlashCommand, respond: AsyncRespond) -> None:
        if command.trigger_id and not await self.runner.claim(
                f"slack:command:{command.trigger_id}"):
            return
        await self.batches.command(command, await self._author(command.user), respond)

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                        context: AsyncBoltContext) -> None:
        _workspace_client.set(context.client)
        await ack()
        click = click_from_payload(body)
        if click is not None:
            self.runner.spawn(self._click(click, respond))

    # --- messages and mentions ----------------------------------------------------------------

    async def _message(self, body: dict[str, Any], bot_user_id: str) -> None:
        message = message_from_event(body, bot_user_id=bot_user_id)
        if message is None:
            return
        decided = verdict(message, bot_user_id=bot_user_id,
                          require_mention=self.core.settings.slack_require_mention)
        if decided == "ignore":
            return
        session = await self.runner.is_session(message.key)
        if decided == "answer_if_session" and not session:
            return
        if not await self.runner.claim(message.claim):
            return
        # A mention in a thread the bot has not been part of brings the thread's images.
        pick_up = message.in_thread and not session
        prompt = prompt_text(message.text, bot_user_id)
        if is_batch(prompt):
            await self.batches.message(message.key, await self._author(message.user), prompt,
                                       message.files)
            return

        call = self.message_call(message, prompt, pick_up=pick_up, bot_user_id=bot_user_id)
        ticket = Ticket.new(message.user)
        reporter = self._reporter(message.channel, message.root_ts, react_ts=message.ts,
                                  requester=message.user, prompt=prompt, ticket=ticket)
        request = resume.message_request(message, prompt, pick_up=pick_up,
                                         bot_user_id=bot_user_id)
        await self.runner.run(message.key, reporter, call, ticket=ticket, request=request)

    def message_call(self, message: SlackMessage, prompt: str, *, pick_up: bool,
                     bot_user_id: str) -> TurnCall:
        """The turn of a message (also of one resumed from a worker that died)."""

        async def call(hooks: TurnHooks) -> Reply:
            files = list(message.files)
            if pick_up:
                files = await self._thread_images(message, bot_user_id) + files
            incoming = IncomingMessage(author=await self._author(message.user), text=prompt,
                                       attachments=tuple(self._attachment(f) for f in files),
                                       direct=message.is_direct)
            return await self.service.handle(message.key, incoming, on_start=hooks.on_start,
                                             on_progress=hooks.on_progress)

        return call

    async def resumed(self, key: ThreadKey, request: TurnDescription,
                      ticket: Ticket) -> tuple[Reporter, TurnCall] | None:
        """A turn taken over from a worker that died (:mod:`adapters.resume`), in its
        workspace (its own bot token when installed through OAuth)."""
        client = await resume.workspace_client(self, key.workspace)
        if client is None:
            return None
        token = _workspace_client.set(client)
        try:
            built = resume.rebuild(self, key, request, ticket)
        finally:
            _workspace_client.reset(token)
        if built is None:
            return None
        reporter, call = built
        reporter.status_ts = await resume.stale_status(client, key, request.ticket)

        def in_workspace(hooks: TurnHooks) -> Awaitable[Reply]:
            _workspace_client.set(client)  # the call runs as a task of its own
            return call(hooks)

        return reporter, in_workspace

    async def _thread_images(self, message: SlackMessage, bot_user_id: str) -> list[SlackFile]:
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            for _ in range(THREAD_PAGES):
                page = await self._web().conversations_replies(
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
        if command.trigger_id and not await self.runner.claim(
                f"slack:command:{command.trigger_id}"):
            return
        root = render.command_root_post(command.user, command.text)
        try:
            posted = await self._web().chat_postMessage(
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

        async def call(hooks: TurnHooks) -> Reply:
            incoming = IncomingMessage(author=author, text=prompt,
                                       direct=command.channel.startswith("D"))
            return await self.service.handle(key, incoming, on_start=hooks.on_start,
                                             on_progress=hooks.on_progress)

        ticket = Ticket.new(command.user)
        reporter = self._reporter(command.channel, root_ts, react_ts=root_ts,
                                  requester=command.user, prompt=prompt, ticket=ticket)
        await self.runner.run(key, reporter, call, ticket=ticket,
                              request=resume.command_request(command, prompt, root_ts))

    # --- buttons ----------------------------------------------------------------------------

    async def _click(self, click: ButtonClick, respond: AsyncRespond) -> None:
        if click.trigger_id and not await self.runner.claim(f"slack:click:{click.trigger_id}"):
            return
        if click.action == "cancel":
            await self._cancel(click, respond)
            return
        record = await self.service.turn(click.turn_id)
        if record is None or record.thread.platform != PLATFORM:
            await self._tell(respond, messages.GONE)
            return
        if click.action == "delete":
            await self._delete(record, click.user, respond)
            return
        if click.action == "drafts":
            await show_drafts(self._web(), self.service, record, respond)
            return
        if click.candidate:
            await self._use(record, click.candidate, click.user, respond)
            return
        key = record.thread
        call = self.rerun_call(record.id, click.action, click.user,
                               direct=key.channel.startswith("D"))
        ticket = Ticket.new(click.user)
        reporter = self._reporter(key.channel, key.thread, react_ts=None, requester=click.user,
                                  prompt=record.prompt, ticket=ticket)
        await self.runner.run(key, reporter, call, ticket=ticket,
                              request=resume.click_request(click, record))

    def rerun_call(self, turn_id: str, action: str, user: str, *, direct: bool) -> TurnCall:
        """Reroll (or 4K) of a stored turn, as a new turn."""
        changes = OptionInput(model="pro", size="4K", count=1) if action == "4k" else None

        async def call(hooks: TurnHooks) -> Reply:
            return await self.service.reroll(
                turn_id, author=await self._author(user), changes=changes,
                on_start=hooks.on_start, on_progress=hooks.on_progress, direct=direct)

        return call

    def _reporter(self, channel: str, thread_ts: str, *, react_ts: str | None,
                  requester: str, prompt: str, ticket: Ticket) -> TurnReporter:
        return TurnReporter(self._web(), channel=channel, thread_ts=thread_ts,
                            react_ts=react_ts, requester=requester,
                            alt=display_prompt(prompt), ticket=ticket.id, pace=self.pace)

    async def _cancel(self, click: ButtonClick, respond: AsyncRespond) -> None:
        """Cancel on a status message: the requester, or a workspace admin, stops the turn
        (the status then says who cancelled it)."""
        name = (await self._author(click.user)).name or click.user
        outcome = self.runner.cancel(click.turn_id, by=click.user, by_name=name)
        if outcome == "not_allowed" and await self._is_admin(click.user):
            outcome = self.runner.cancel(click.turn_id, by=click.user, by_name=name,
                                         admin=True)
        if outcome == "not_allowed":
            await self._tell(respond, messages.CANCEL_NOT_YOURS)
        elif outcome == "gone":
            await self._tell(respond, messages.CANCEL_GONE)

    async def _use(self, record: TurnView, number: int, user: str,
                   respond: AsyncRespond) -> None:
        """A Use button: the thread continues from that candidate; the thread is told."""
        try:
            await self.service.use_candidate(record.id, number)
        except ImagebotError as exc:
            await self._tell(respond, exc.user_message)
            return
        text = messages.chosen_text(number, f"<@{user}>")
        try:
            await self._web().chat_postMessage(channel=record.thread.channel,
                                               thread_ts=record.thread.thread, text=text,
                                               blocks=[render.section(text)])
        except SLACK_FAILURES as exc:
            logger.info("could not say which candidate was chosen: %s", slack_error(exc))

    async def _delete(self, record: TurnView, user: str, respond: AsyncRespond) -> None:
        if not await self._may_delete(user, record.author.id):
            await self._tell(respond, "Only the person who asked for this result, or a "
                                      "workspace admin, can delete it.")
            return
        deleted = await self.service.delete(record.id, by=await self._author(user))
        await self._remove_posts(deleted.platform_refs if deleted else record.platform_refs)
        await self._tell(respond, "Deleted. Later replies in this thread won't build on it.")

    async def _may_delete(self, user: str, author_id: str) -> bool:
        return user == author_id or await self._is_admin(user)

    async def _is_admin(self, user: str) -> bool:
        try:
            info = await self._web().users_info(user=user)
        except SLACK_FAILURES as exc:
            logger.warning("users.info failed: %s", slack_error(exc))
            return False
        return is_admin(info.get("user") or {})

    async def _remove_posts(self, refs: Mapping[str, Any]) -> None:
        channel = str(refs.get("channel") or "")
        for ts in refs.get("messages") or ():
            try:
                await self._web().chat_delete(channel=channel, ts=ts)
            except SLACK_FAILURES as exc:
                logger.info("chat.delete %s failed: %s", ts, slack_error(exc))
        for file_id in refs.get("files") or ():
            try:
                await self._web().files_delete(file=file_id)
            except SLACK_FAILURES as exc:
                logger.info("files.delete %s failed: %s", file_id, slack_error(exc))

    async def _author(self, user: str) -> Author:
        if user not in self._names:
            try:
                info = await self._web().users_info(user=user)
                self._names[user] = display_name(info.get("user") or {})
            except SLACK_FAILURES as exc:
                logger.info("users.info failed: %s", slack_error(exc))
                return Author(user)
        return Author(user, self._names[user])

    @staticmethod
    async def _tell(respond: AsyncRespond, text: str) -> None:
        """An ephemeral answer to the person who clicked or typed the command."""
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
        except SLACK_FAILURES as exc:
            logger.info("could not answer with an ephemeral message: %s", slack_error(exc))

    # --- attachments ------------------------------------------------------------------------

    def _attachment(self, file: SlackFile) -> Attachment:
        async def fetch() -> bytes:
            return await self._download(file)

        return Attachment(name=file.name, mime_type=file.mime_type, fetch=fetch, size=file.size)

    async def _download(self, file: SlackFile) -> bytes:
        url = file.url or await self._file_url(file)
        token = self._web().token or ""
        try:
            data, content_type = await download(
                self._http(), url, name=file.name, allowed_hosts=self._hosts,
                max_bytes=self.core.settings.max_attachment_bytes,
                headers={"Authorization": f"Bearer {token}"})
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # A refused, reset or stalled connection is the file's failure, not ours.
            logger.info("downloading a file failed: %s", type(exc).__name__)
            raise AttachmentError(render.download_failed(file.name, exc)) from exc
        if looks_like_html(data, content_type):
            raise AttachmentError(render.files_read_missing(file.name))
        return data

    async def _file_url(self, file: SlackFile) -> str:
        """Some events leave a file's details out; ``files.info`` has them."""
        try:
            info = (await self._web().files_info(file=file.id)).get("file") or {}
        except SLACK_FAILURES as exc:
            if slack_error(exc) == "missing_scope":
                raise AttachmentError(render.files_read_missing(file.name)) from exc
            raise AttachmentError(f"Could not get `{file.name}` from Slack "
                                  f"({slack_error(exc)}). Attach it again.") from exc
        url = info.get("url_private_download") or info.get("url_private")
        if not url:
            raise AttachmentError(f"Slack gave no download address for `{file.name}`.")
        return str(url)

