"""The Discord adapter: ``/imagine``, mentions, thread sessions, "Edit with Gemini" and the
result buttons, on a discord.py client that runs beside ``imagebot serve``.

What happens where:

* ``inbound``: Discord input -> neutral requests, pure.
* ``render``: replies -> Discord messages, pure.
* ``reporter``: one turn's status, result and errors on Discord.
* ``client``: the discord.py client, its commands and components.
* here: routing, dedupe, downloads and the lifecycle.

Every turn runs in a task of its own, apart from the gateway connection, so a gateway
RECONNECT or RESUME in the middle of a generation neither loses nor repeats the reply;
message and interaction ids are recorded in the store, so an event delivered twice is
acted on once, even across a restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import web

from adapters.discord import render, resume
from adapters.discord.admin import DiscordAdmin
from adapters.discord.batch import DiscordBatches, DiscordBatchPoster
from adapters.discord.client import (
    PromptModal,
    gateway_failure,
    invite_url,
    make_bot,
    shard_states,
)
from adapters.discord.inbound import (
    PLATFORM,
    BatchRequest,
    FileRef,
    TurnRequest,
    allowed_hosts,
    edit_modal_id,
    edit_request,
    event_id,
    image_files,
    message_request,
    thread_key,
    thread_name,
)
from adapters.discord.progress import cancel_turn, show_drafts
from adapters.discord.reporter import (
    THREAD_ARCHIVE_MINUTES,
    TICK,
    OriginalResponse,
    StatusMessage,
    TurnReporter,
    failure_reason,
)
from adapters.download import download
from adapters.turns import Ticket, TurnHooks, TurnRunner
from bot import messages
from bot.admission import Admission
from bot.config import DEFAULT_DISCORD_API_BASE, DEFAULT_DISCORD_GATEWAY_URL
from bot.errors import AttachmentError, ErrorKind, ImagebotError
from bot.model import Attachment, Author, IncomingMessage, Reply, ThreadKey, TurnView
from bot.planning import display_prompt
from bot.runtime import Core
from bot.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

#: How long ``start`` waits for the gateway's READY before going on without it.
READY_TIMEOUT = 30.0
#: An unanswered "Edit with Gemini" prompt is forgotten after this many seconds.
MODAL_TIMEOUT = 15 * 60.0
_USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


class DiscordAdapter:
    """Runs imagebot as a Discord bot (``imagebot serve`` starts it when DISCORD_TOKEN is set)."""

    name = "discord"

    def __init__(self, core: Core, *, guild_ready_timeout: float = 2.0,
                 tick: float = TICK) -> None:
        """
        Args:
            core: the running core.
            guild_ready_timeout: seconds discord.py waits for guilds before READY.
            tick: seconds between status refreshes while a turn runs.
        """
        settings = core.settings
        if not settings.discord_token:
            raise ValueError("DISCORD_TOKEN is not set")
        self.core = core
        self.service = core.service
        self.runner = TurnRunner(core.service, name="discord")
        self.tick = tick
        self.bot = make_bot(self, guild_ids=settings.discord_guild_ids,
                            guild_ready_timeout=guild_ready_timeout,
                            shard_count=settings.discord_shard_count,
                            shard_ids=settings.discord_shard_ids)
        self.admin = DiscordAdmin(self)  # /imagebot usage | settings, settings menus
        self._hosts = allowed_hosts(settings.discord_api_base)
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._modals: set[PromptModal] = set()
        self._saved_endpoints: tuple[str, yarl.URL] | None = None
        # Batches (adapters.discord.batch): /batch, its Cancel button, and the poster.
        self.batches = DiscordBatches(core.service, self._attachments, self._download,
                                      self._ephemeral)
        self.batch_poster = DiscordBatchPoster(self.bot, core.service)
        # Turns taken over from a worker that died (adapters.resume), rebuilt for Discord.
        self.resumed = functools.partial(resume.rebuild, self)

    # --- lifecycle (the serve Adapter protocol) -------------------------------------------

    def mount(self, app: web.Application) -> None:
        """Discord keeps its own connection; nothing is served over HTTP."""

    async def start(self) -> None:
        """Logs in (commands are synced then), connects in the background, waits for READY.

        Raises:
            ImagebotError: the token was refused or the gateway would not connect.
        """
        self._point_at_endpoints()
        try:
            await self._login()
            self._runner = asyncio.create_task(self.bot.connect(reconnect=True),
                                               name="imagebot-discord-gateway")
            await self._wait_ready(self._runner)
        except BaseException:
            await self._teardown()
            raise

    async def stop(self) -> None:
        """Stops taking work, lets running turns post for ``STOP_GRACE`` s, then disconnects."""
        self.runner.stopping = True
        for modal in self._modals:
            modal.stop()
        self._modals.clear()
        await self.runner.stop()
        await self._teardown()

    def status(self) -> dict[str, Any]:
        shards = shard_states(self.bot)
        if shards:
            connected = (self.bot.is_ready() and not self.bot.is_closed()
                         and all(s["connected"] for s in shards.values()))
        else:
            ws = self.bot.ws
            connected = (ws is not None and ws.open and self.bot.is_ready()
                         and not self.bot.is_closed())
        latency = self.bot.latency
        return {"ok": connected and not self.runner.stopping, "connected": connected,
                "latency": round(latency, 3) if math.isfinite(latency) else None,
                "message_content": self.bot.reads_all_messages,
                **({"shards": shards} if shards else {}), **self.runner.status()}

    def _point_at_endpoints(self) -> None:
        """Applies DISCORD_API_BASE / DISCORD_GATEWAY_URL; discord.py keeps both as class
        attributes, so they are changed only when configured and restored on stop."""
        settings = self.core.settings
        saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        api_base = settings.discord_api_base.rstrip("/")
        if api_base != DEFAULT_DISCORD_API_BASE.rstrip("/"):
            discord.http.Route.BASE = api_base
            self._saved_endpoints = saved
        if settings.discord_gateway_url != DEFAULT_DISCORD_GATEWAY_URL:
            gateway = yarl.URL(settings.discord_gateway_url)
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
            self._saved_endpoints = saved

    def _restore_endpoints(self) -> None:
        if self._saved_endpoints is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                self._saved_endpoints)
            self._saved_endpoints = None

    async def _login(self) -> None:
        token = self.core.settings.discord_token or ""
        try:
            await self.bot.login(token)
        except discord.LoginFailure:
            raise ImagebotError(
                "Discord refused DISCORD_TOKEN (401 Unauthorized). Copy the bot token again "
                "from the Developer Portal (Bot > Reset Token).", kind=ErrorKind.STARTUP) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            raise ImagebotError(
                f"Could not log in to Discord at {discord.http.Route.BASE} "
                f"({failure_reason(exc)}). Check the network and DISCORD_API_BASE.",
                kind=ErrorKind.STARTUP) from exc

    async def _wait_ready(self, runner: asyncio.Task[None]) -> None:
        ready = asyncio.create_task(self.bot.wait_until_ready())
        await asyncio.wait({ready, runner}, timeout=READY_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            await cancel_and_wait(ready)
        if runner.done():
            error = None if runner.cancelled() else runner.exception()
            raise ImagebotError(gateway_failure(error), kind=ErrorKind.STARTUP)
        if not self.bot.is_ready():
            logger.warning("the Discord gateway is not ready after %.0fs; still trying",
                           READY_TIMEOUT)
            return
        logger.info("Discord adapter running as %s in %d guild(s)%s; invite: %s", self.bot.user,
                    len(self.bot.guilds),
                    "" if self.bot.reads_all_messages else " (mentions needed in threads)",
                    invite_url(self.bot.application_id or 0))

    async def _teardown(self) -> None:
        try:
            await self.bot.close()
        except Exception as exc:  # the gateway task and the session still get closed
            logger.warning("closing the Discord client failed: %s", failure_reason(exc))
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                await asyncio.wait_for(runner, 10)
            except TimeoutError:
                logger.warning("the Discord gateway did not close within 10 s; cancelled it")
            except asyncio.CancelledError:
                logger.debug("the Discord gateway task was cancelled")
            except Exception as exc:
                logger.warning("the Discord gateway connection had failed: %s",
                               gateway_failure(exc))
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._restore_endpoints()

    # --- handlers called by the client --------------------------------------------------

    async def imagine(self, interaction: discord.Interaction, request: TurnRequest) -> None:
        await self._guarded(interaction, self._interaction_turn(interaction, request))

    async def edit_menu(self, interaction: discord.Interaction,
                        message: discord.Message) -> None:
        await self._guarded(interaction, self._open_prompt(interaction, message))

    async def button(self, interaction: discord.Interaction, action: str, turn_id: str) -> None:
        await self._guarded(interaction, self._click(interaction, action, turn_id))

    async def batch(self, interaction: discord.Interaction, request: BatchRequest) -> None:
        await self._guarded(interaction, self._batch(interaction, request))

    async def batch_cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        await self._guarded(interaction, self._batch_cancel(interaction, job_id))

    async def _batch(self, interaction: discord.Interaction, request: BatchRequest) -> None:
        if await self._accept(interaction):
            session = _session_of(interaction.channel, interaction.guild_id or 0)
            # Tracked like a turn, so a shutdown lets the submission finish (or cancels it).
            self.runner.spawn(self._guarded(interaction, self.batches.command(
                interaction, request, session)))

    async def _batch_cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        if await self._accept(interaction):
            self.runner.spawn(self._guarded(interaction,
                                            self.batches.cancel(interaction, job_id)))

    async def message(self, message: discord.Message) -> None:
        try:
            await self._route_message(message)
        except Exception:  # one bad event must not take the adapter down
            logger.exception("handling Discord message %s failed", message.id)

    async def _guarded(self, interaction: discord.Interaction,
                       work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("handling Discord interaction %s failed", interaction.id)
            await self._ephemeral(interaction, render.error_message(messages.INTERNAL_ERROR))

    # --- commands and the context menu ----------------------------------------------------

    async def _interaction_turn(self, interaction: discord.Interaction,
                                request: TurnRequest) -> None:
        """``/imagine`` or a submitted "Edit with Gemini" prompt: in a thread the turn
        continues that session; in a text channel a thread opens on the result."""
        if not await self._accept(interaction):
            return
        channel, guild_id = interaction.channel, interaction.guild_id
        if guild_id is None or not isinstance(channel, discord.abc.Messageable):
            await self._ephemeral(interaction, render.error_message(
                "Use imagebot in a server's text channel or thread."))
            return
        key = _session_of(channel, guild_id)
        incoming = IncomingMessage(author=_author(interaction.user), text=request.text,
                                   attachments=self._attachments(request.files),
                                   options=request.options)
        # Let in now (policy, quota reserved), so a refusal is private and immediate.
        admission = await self._admit(key or _place(guild_id, channel), incoming,
                                      functools.partial(self._ephemeral, interaction),
                                      new_thread=key is None)
        if admission is None:
            return
        try:
            callback = await interaction.response.defer(thinking=True)
            head_id = callback.message_id if callback and callback.message_id else (
                await interaction.original_response()).id
            open_thread = None if key else thread_name(request.text)
            # A thread opened on a message gets the message's id, so the key is known now.
            key = key or thread_key(guild_id, _channel_id(channel), head_id)
            ticket = Ticket.new(str(interaction.user.id))
            reporter = TurnReporter(OriginalResponse(interaction), channel,
                                    upload_limit=interaction.filesize_limit,
                                    alt=display_prompt(request.text), open_thread=open_thread,
                                    tick=self.tick, ticket=ticket.id)
            self.runner.submit(key, reporter, functools.partial(
                self._handle, key, incoming, admission=admission), ticket=ticket,
                request=None if open_thread else resume.message_turn(incoming, request.files))
        except BaseException:
            await self.service.release(admission)
            raise

    async def _open_prompt(self, interaction: discord.Interaction,
                           message: discord.Message) -> None:
        if not await self._accept(interaction):
            return
        files = image_files(message.attachments)
        if not files:
            await self._ephemeral(interaction, render.NO_IMAGES)
            return
        self._modals = {m for m in self._modals if not m.is_finished()}
        modal = PromptModal(custom_id=edit_modal_id(interaction.id), timeout=MODAL_TIMEOUT,
                            on_prompt=functools.partial(self._edit_prompt, files))
        self._modals.add(modal)
        await interaction.response.send_modal(modal)

    async def _edit_prompt(self, files: tuple[FileRef, ...], interaction: discord.Interaction,
                           prompt: str) -> None:
        await self._guarded(interaction,
                            self._interaction_turn(interaction, edit_request(prompt, files)))

    # --- buttons ------------------------------------------------------------------------

    async def _click(self, interaction: discord.Interaction, action: str, turn_id: str) -> None:
        if not await self._accept(interaction):
            return
        if action == "cancel":
            refusal = await cancel_turn(self.runner, interaction, turn_id)
            if refusal:
                await self._ephemeral(interaction, refusal)
            return
        record = await self.service.turn(turn_id)
        if record is None:
            await self._ephemeral(interaction, messages.GONE)
            return
        if action == "delete":
            await self._delete(interaction, record)
            return
        if action == "drafts":
            await show_drafts(self.service, interaction, record)
            return
        if action.startswith("use"):
            await self._use(interaction, record, int(action[3:]))
            return
        # Acknowledged without a message: the new result shows in the session thread.
        await interaction.response.defer()
        channel = self._thread_channel(record.thread)
        ticket = Ticket.new(str(interaction.user.id))
        reporter = TurnReporter(StatusMessage(channel), channel,
                                upload_limit=interaction.filesize_limit,
                                alt=display_prompt(record.prompt), tick=self.tick,
                                ticket=ticket.id)
        changes = resume.FOUR_K if action == "4k" else None
        author = _author(interaction.user)

        def call(hooks: TurnHooks) -> Awaitable[Reply]:
            return self.service.reroll(turn_id, author=author, changes=changes,
                                       on_start=hooks.on_start, on_progress=hooks.on_progress)

        self.runner.submit(record.thread, reporter, call, ticket=ticket,
                           request=resume.rerun_turn(action, author, turn_id, record.prompt))

    async def _use(self, interaction: discord.Interaction, record: TurnView,
                   number: int) -> None:
        """A Use button: the thread continues from that candidate; the thread is told."""
        try:
            await self.service.use_candidate(record.id, number)
        except ImagebotError as exc:
            await self._ephemeral(interaction, render.error_message(exc.user_message))
            return
        await interaction.response.send_message(
            messages.chosen_text(number, interaction.user.mention))

    async def _delete(self, interaction: discord.Interaction, record: TurnView) -> None:
        """The requester, or anyone allowed to manage messages here, may delete a result."""
        allowed = (str(interaction.user.id) == record.author.id
                   or interaction.permissions.manage_messages)
        if not allowed:
            await self._ephemeral(interaction, render.NOT_YOURS)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        deleted = await self.service.delete(record.id, by=_author(interaction.user))
        failed, reason = await self._delete_messages(
            deleted.platform_refs if deleted else record.platform_refs)
        text = (render.DELETE_INCOMPLETE.format(count=failed, reason=reason) if failed
                else messages.DELETED)
        await interaction.followup.send(text, ephemeral=True)

    async def _delete_messages(self, refs: Mapping[str, Any]) -> tuple[int, str]:
        failed, reason = 0, ""
        for channel_id, message_id in reversed(refs.get("messages") or []):
            channel = self.bot.get_partial_messageable(int(channel_id))
            try:
                await channel.get_partial_message(int(message_id)).delete()
            except discord.NotFound:
                continue  # already gone
            except discord.HTTPException as exc:
                failed, reason = failed + 1, failure_reason(exc)
        return failed, reason

    # --- messages -----------------------------------------------------------------------

    async def _route_message(self, message: discord.Message) -> None:
        """A mention in a text channel starts a thread session; in a session thread every
        message continues it (only mentions without the Message Content intent)."""
        me = self.bot.user
        if (me is None or message.author.bot or message.guild is None
                or message.type not in _USER_MESSAGES):
            return
        mentioned = any(user.id == me.id for user in message.mentions)
        if not (mentioned or self.bot.reads_all_messages):
            return
        channel = await self._resolve(message.channel)
        if isinstance(channel, discord.Thread) and channel.parent_id:
            key = thread_key(channel.guild.id, channel.parent_id, channel.id)
            if mentioned or await self.runner.is_session(key):
                await self._thread_message(message, key, channel)
        elif isinstance(channel, discord.TextChannel) and mentioned:
            await self._mention(message, channel)

    async def _thread_message(self, message: discord.Message, key: ThreadKey,
                              thread: discord.Thread) -> None:
        request = self._message_request(message)
        if not (request.text or request.files) or not await self._accept_message(message):
            return
        incoming = self._incoming(message, request)
        admission = await self._admit(key, incoming, functools.partial(_say, thread))
        if admission is not None:
            self._message_turn(key, thread, incoming, admission, request.files)

    async def _mention(self, message: discord.Message, channel: discord.TextChannel) -> None:
        request = self._message_request(message)
        if not await self._accept_message(message):
            return
        incoming = self._incoming(message, request)
        admission = await self._admit(_place(channel.guild.id, channel), incoming,
                                      functools.partial(_say, channel), new_thread=True)
        if admission is None:
            return
        try:
            thread = await message.create_thread(name=thread_name(request.text),
                                                 auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            await self.service.release(admission)
            await _say(channel, render.thread_failed(failure_reason(exc)))
            return
        key = thread_key(channel.guild.id, channel.id, thread.id)
        self._message_turn(key, thread, incoming, admission, request.files)

    def _incoming(self, message: discord.Message, request: TurnRequest) -> IncomingMessage:
        return IncomingMessage(author=_author(message.author), text=request.text,
                               attachments=self._attachments(request.files))

    async def _admit(self, where: ThreadKey, incoming: IncomingMessage,
                     tell: Callable[[str], Awaitable[None]], *,
                     new_thread: bool = False) -> Admission | None:
        """Lets the turn in (policy checked, quota reserved), or tells at once what it
        would refuse (before any download or API call)."""
        try:
            return await self.service.admit(where, incoming, new_thread=new_thread)
        except ImagebotError as exc:
            await tell(render.error_message(exc.user_message))
            return None

    def _message_turn(self, key: ThreadKey, thread: discord.Thread, incoming: IncomingMessage,
                      admission: Admission, files: tuple[FileRef, ...]) -> None:
        ticket = Ticket.new(incoming.author.id)
        reporter = TurnReporter(StatusMessage(thread), thread,
                                upload_limit=thread.guild.filesize_limit,
                                alt=display_prompt(incoming.text), tick=self.tick,
                                ticket=ticket.id)
        self.runner.submit(key, reporter, functools.partial(
            self._handle, key, incoming, admission=admission), ticket=ticket,
            request=resume.message_turn(incoming, files))

    def _message_request(self, message: discord.Message) -> TurnRequest:
        bot_id = self.bot.user.id if self.bot.user else 0
        return message_request(message.content, message.attachments, bot_id=bot_id)

    async def _resolve(self, channel: Any) -> Any:
        """The message's channel; a thread missing from the cache is fetched."""
        if not isinstance(channel, discord.PartialMessageable):
            return channel
        try:
            return await self.bot.fetch_channel(channel.id)
        except discord.HTTPException as exc:
            logger.info("could not fetch channel %s: %s", channel.id, failure_reason(exc))
            return None

    # --- turns --------------------------------------------------------------------------

    def _handle(self, key: ThreadKey, incoming: IncomingMessage, hooks: TurnHooks, *,
                admission: Admission | None = None) -> Awaitable[Reply]:
        return self.service.handle(key, incoming, on_start=hooks.on_start,
                                   on_progress=hooks.on_progress, admission=admission)

    def _attachments(self, files: tuple[FileRef, ...]) -> tuple[Attachment, ...]:
        return tuple(Attachment(name=f.name, mime_type=f.content_type, size=f.size,
                                fetch=functools.partial(self._download, f)) for f in files)

    async def _download(self, ref: FileRef) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        try:
            data, _ = await download(self._session, ref.url, name=ref.name,
                                     allowed_hosts=self._hosts,
                                     max_bytes=self.core.settings.max_attachment_bytes)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # A refused, reset or stalled connection is the file's failure, told to the
            # user with its name, not an internal error.
            logger.info("downloading an attachment failed: %s", type(exc).__name__)
            raise AttachmentError(render.download_failed(ref.name, exc)) from exc
        return data

    def _thread_channel(self, key: ThreadKey) -> discord.abc.Messageable:
        channel = self.bot.get_channel(int(key.thread))
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.bot.get_partial_messageable(int(key.thread), guild_id=int(key.workspace))

    # --- acknowledgements ---------------------------------------------------------------

    async def _accept(self, interaction: discord.Interaction) -> bool:
        """False for an interaction seen before, or one arriving while stopping."""
        if self.runner.stopping:
            await self._ephemeral(interaction, messages.STOPPING)
            return False
        return await self.runner.claim(event_id("interaction", interaction.id))

    async def _accept_message(self, message: discord.Message) -> bool:
        if self.runner.stopping:
            await _say(message.channel, messages.STOPPING)
            return False
        return await self.runner.claim(event_id("message", message.id))

    @staticmethod
    async def _ephemeral(interaction: discord.Interaction, text: str) -> None:
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            logger.warning("could not answer interaction %s: %s", interaction.id,
                           failure_reason(exc))


def _session_of(channel: Any, guild_id: int) -> ThreadKey | None:
    """The session a command used inside a thread continues (none in a plain channel)."""
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return thread_key(guild_id, channel.parent_id, channel.id)
    return None


def _channel_id(channel: discord.abc.Messageable) -> int:
    return int(getattr(channel, "id", 0))


def _author(user: discord.User | discord.Member) -> Author:
    """The person, with their role ids for role-based policies (the guild's own id is
    ``@everyone``)."""
    roles = tuple(str(role.id) for role in getattr(user, "roles", ()))
    return Author(id=str(user.id), name=user.display_name, roles=roles)


def _place(guild_id: int, channel: Any) -> ThreadKey:
    """A channel where a new thread will open (its id is not known yet)."""
    return ThreadKey(PLATFORM, str(guild_id), str(_channel_id(channel)), "")


async def _say(channel: discord.abc.Messageable, text: str) -> None:
    try:
        await channel.send(text)
    except discord.HTTPException as exc:
        logger.warning("could not post in the channel: %s", failure_reason(exc))
