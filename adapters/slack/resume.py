"""Slack turns as :class:`~adapters.turns.TurnDescription` values, and back: what another
worker needs to run a turn whose worker died (see :mod:`adapters.resume`).

A message turn keeps the message (channel, ts, thread, its files by id and URL, whether
the thread's earlier images come along); a button's re-run keeps the turn it repeats. The
resumed turn posts in the same thread with the workspace's bot token, as the first one
would have, in place of the status message the first one left there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import PLATFORM, ButtonClick, SlackFile, SlackMessage, SlashCommand
from adapters.slack.reporter import SLACK_FAILURES, TurnReporter, slack_error
from adapters.turns import Ticket, TurnCall, TurnDescription
from bot.model import ThreadKey, TurnView

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

logger = logging.getLogger(__name__)


def message_request(message: SlackMessage, prompt: str, *, pick_up: bool,
                    bot_user_id: str) -> TurnDescription:
    files = tuple({"id": f.id, "name": f.name, "mime_type": f.mime_type, "size": f.size,
                   "url": f.url} for f in message.files)
    return TurnDescription(
        platform=PLATFORM, kind="message", requester=message.user, text=prompt,
        direct=message.is_direct, files=files,
        post={"ts": message.ts, "thread_ts": message.thread_ts,
              "channel_type": message.channel_type, "pick_up": pick_up,
              "bot_user_id": bot_user_id})


def command_request(command: SlashCommand, prompt: str, root_ts: str) -> TurnDescription:
    """``/imagine``: the bot's own root post opened the thread; the turn is its message."""
    return TurnDescription(platform=PLATFORM, kind="message", requester=command.user,
                           requester_name=command.user_name, text=prompt,
                           direct=command.channel.startswith("D"),
                           post={"ts": root_ts, "thread_ts": None, "channel_type": ""})


def click_request(click: ButtonClick, record: TurnView) -> TurnDescription:
    return TurnDescription(platform=PLATFORM, kind=click.action, requester=click.user,
                           text=record.prompt, turn_id=record.id,
                           direct=record.thread.channel.startswith("D"))


def message_of(key: ThreadKey, request: TurnDescription) -> SlackMessage:
    post = request.post
    files = tuple(SlackFile(id=str(f.get("id") or ""), name=str(f.get("name") or "file"),
                            mime_type=str(f.get("mime_type") or ""), size=f.get("size"),
                            url=f.get("url")) for f in request.files)
    return SlackMessage(
        kind="app_mention", team=key.workspace, channel=key.channel,
        channel_type=str(post.get("channel_type") or ""), user=request.requester,
        ts=str(post.get("ts") or key.thread), thread_ts=post.get("thread_ts"),
        text=request.text, files=files)


def rebuild(adapter: SlackAdapter, key: ThreadKey, request: TurnDescription,
            ticket: Ticket) -> tuple[TurnReporter, TurnCall] | None:
    """The reporter and call of a Slack turn taken over from a worker that died."""
    if request.kind == "message":
        message = message_of(key, request)
        call = adapter.message_call(message, request.text,
                                    pick_up=bool(request.post.get("pick_up")),
                                    bot_user_id=str(request.post.get("bot_user_id") or ""))
        react: str | None = message.ts
    elif request.kind in ("reroll", "4k") and request.turn_id:
        call = adapter.rerun_call(request.turn_id, request.kind, request.requester,
                                  direct=request.direct)
        react = None
    else:
        return None
    reporter = adapter._reporter(key.channel, key.thread, react_ts=react,
                                 requester=request.requester, prompt=request.text,
                                 ticket=ticket)
    return reporter, call


async def workspace_client(adapter: SlackAdapter, team: str) -> AsyncWebClient | None:
    """The Web API client of workspace ``team``: the configured one, or with OAuth installs
    the workspace's own bot token (``None`` when the workspace is not installed)."""
    if not adapter.core.settings.slack_oauth:
        return adapter.client
    store = adapter.app.installation_store
    bot = await store.async_find_bot(enterprise_id=None, team_id=team) if store else None
    if bot is None or not bot.bot_token:
        logger.warning("no installation for Slack workspace %s: its turn is not resumed", team)
        return adapter.client if adapter.client.token else None
    return AsyncWebClient(token=bot.bot_token, base_url=adapter.client.base_url,
                          retry_handlers=adapter.client.retry_handlers)


async def stale_status(client: AsyncWebClient, key: ThreadKey, ticket: str) -> str | None:
    """The status message the dead worker left in the thread (found by its Cancel button,
    which carries the turn's ticket), for the resumed turn to show its own status in."""
    if not ticket:
        return None
    try:
        page = await client.conversations_replies(channel=key.channel, ts=key.thread,
                                                  limit=200)
    except SLACK_FAILURES as exc:
        logger.info("could not look for the stopped turn's status: %s", slack_error(exc))
        return None
    for message in reversed(page.get("messages") or ()):
        if message.get("bot_id") and any(
                element.get("value") == ticket for block in message.get("blocks") or ()
                for element in block.get("elements") or () if isinstance(element, dict)):
            return str(message["ts"])
    return None
