"""The buttons of live progress on Discord: Cancel on a status, Drafts on a result."""

from __future__ import annotations

import asyncio
import logging

import discord

from adapters.discord import render
from adapters.discord.reporter import failure_reason, files_of
from adapters.turns import TurnRunner
from bot import messages
from bot.model import ReplyImage, TurnView
from bot.service import ConversationService

logger = logging.getLogger(__name__)


async def cancel_turn(runner: TurnRunner, interaction: discord.Interaction,
                      ticket_id: str) -> str | None:
    """Cancel on a status: the requester, or anyone with Manage Messages here, stops the
    turn (the status then says who cancelled it).

    Returns:
        What to tell the clicker privately when nothing was cancelled.
    """
    outcome = runner.cancel(ticket_id, by=str(interaction.user.id),
                            by_name=interaction.user.display_name,
                            admin=interaction.permissions.manage_messages)
    if outcome == "not_allowed":
        return messages.CANCEL_NOT_YOURS
    if outcome == "gone":
        return messages.CANCEL_GONE
    await interaction.response.defer()  # acknowledged; the status message says the rest
    return None


async def show_drafts(service: ConversationService, interaction: discord.Interaction,
                      record: TurnView) -> None:
    """**Drafts**: the drafts of a result, to whoever clicked only (ephemeral)."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    images = [ReplyImage(data=await service.image(p.image.sha256), mime_type=p.image.mime_type,
                         width=p.image.width, height=p.image.height, sha256=p.image.sha256)
              for p in record.reply.thoughts if p.image is not None]
    payload = await asyncio.to_thread(render.drafts_payload, images,
                                      upload_limit=interaction.filesize_limit)
    try:
        await interaction.followup.send(payload.content, ephemeral=True,
                                        files=files_of(payload))
    except discord.HTTPException as exc:
        logger.warning("could not show the drafts: %s", failure_reason(exc))
