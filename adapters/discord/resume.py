"""Discord turns as :class:`~adapters.turns.TurnDescription` values, and back: what another
worker needs to run a turn whose worker died (see :mod:`adapters.resume`).

The resumed turn posts in the session thread as a channel message with the bot token, never
through the original interaction (its token expires, and belongs to the dead worker's
response). A ``/imagine`` in a text channel, whose thread opens on the interaction's
response, is therefore not resumable; in a session thread it is. Attachments are kept as
Discord CDN references (their signed URLs outlive a lease by far).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.inbound import FileRef, button_id
from adapters.discord.reporter import StatusMessage, TurnReporter, failure_reason
from adapters.turns import Reporter, Ticket, TurnCall, TurnDescription, TurnHooks
from bot.model import Author, IncomingMessage, Reply, ThreadKey
from bot.options import OptionInput
from bot.planning import display_prompt

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

logger = logging.getLogger(__name__)

PLATFORM = "discord"
#: How many of the thread's latest messages are searched for the dead worker's status.
STATUS_LOOKBACK = 50
#: Discord's upload limit for a guild without boosts, when the channel does not tell.
UPLOAD_LIMIT = 10 * 1024 * 1024
#: The 4K button: one Nano Banana Pro image at 4K (not a new set of candidates).
FOUR_K = OptionInput(model="pro", size="4K", count=1)


def message_turn(incoming: IncomingMessage, files: tuple[FileRef, ...]) -> TurnDescription:
    """A message (or ``/imagine``) in a session thread; the result goes to that thread."""
    author = incoming.author
    return TurnDescription(
        platform=PLATFORM, kind="message", requester=author.id, requester_name=author.name,
        text=incoming.text, options=incoming.options.given(),
        files=tuple(dataclasses.asdict(f) for f in files), post={"roles": list(author.roles)})


def rerun_turn(action: str, author: Author, turn_id: str, prompt: str) -> TurnDescription:
    """Reroll or 4K of a stored turn."""
    return TurnDescription(platform=PLATFORM, kind=action, requester=author.id,
                           requester_name=author.name, text=prompt, turn_id=turn_id,
                           post={"roles": list(author.roles)})


async def rebuild(adapter: DiscordAdapter, key: ThreadKey, turn: TurnDescription,
                  ticket: Ticket) -> tuple[Reporter, TurnCall] | None:
    """The reporter and call of a Discord turn taken over from a worker that died."""
    service = adapter.service
    author = Author(turn.requester, turn.requester_name,
                    roles=tuple(str(r) for r in turn.post.get("roles") or ()))
    if turn.kind == "message":
        files = tuple(FileRef(**f) for f in turn.files)
        incoming = IncomingMessage(author=author, text=turn.text,
                                   attachments=adapter._attachments(files),
                                   options=OptionInput.from_dict(turn.options))

        async def call(hooks: TurnHooks) -> Reply:
            return await service.handle(key, incoming, on_start=hooks.on_start,
                                        on_progress=hooks.on_progress)
    elif turn.kind in ("reroll", "4k") and turn.turn_id:
        changes = FOUR_K if turn.kind == "4k" else None

        async def call(hooks: TurnHooks) -> Reply:
            return await service.reroll(turn.turn_id, author=author, changes=changes,
                                        on_start=hooks.on_start,
                                        on_progress=hooks.on_progress)
    else:
        return None
    channel = adapter._thread_channel(key)
    status = StatusMessage(channel)
    status.message = await stale_status(channel, button_id("cancel", turn.ticket))
    reporter = TurnReporter(status, channel, upload_limit=_limit(channel),
                            alt=display_prompt(turn.text), tick=adapter.tick,
                            ticket=ticket.id)
    return reporter, call


async def stale_status(channel: discord.abc.Messageable, cancel_id: str
                       ) -> discord.Message | None:
    """The status message the dead worker left in the thread (found by its Cancel button),
    for the resumed turn to show its own status in."""
    try:
        async for message in channel.history(limit=STATUS_LOOKBACK):
            if any(getattr(c, "custom_id", None) == cancel_id for row in message.components
                   for c in getattr(row, "children", ())):
                return message
    except discord.HTTPException as exc:
        logger.info("could not look for the stopped turn's status: %s", failure_reason(exc))
    return None


def _limit(channel: Any) -> int:
    guild = getattr(channel, "guild", None)
    return int(getattr(guild, "filesize_limit", 0) or UPLOAD_LIMIT)
