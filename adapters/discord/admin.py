"""``/imagebot usage`` and ``/imagebot settings`` on Discord, answered privately (ephemeral),
and the select menus admins change a channel's rules with.

The menus are dynamic items (their custom id carries the rule), so a pick is answered by
whichever process runs when it comes; every pick is checked again against the person who
made it, for the channel it was made in.
"""

from __future__ import annotations

import logging
from re import Match
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from adapters.discord import render
from adapters.discord.inbound import PLATFORM
from bot.errors import ImagebotError
from bot.model import Author, ThreadKey
from bot.policy_view import Control, PolicyView, view_text
from bot.reports import usage_text

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

logger = logging.getLogger(__name__)

SELECT_TEMPLATE = r"imagebot:policy:(?P<rule>[a-z_]+)"
#: Discord's limit on a message's text.
CONTENT_LIMIT = 2000


def bold(text: str) -> str:
    return f"**{text}**"


def where_of(interaction: discord.Interaction) -> ThreadKey | None:
    """The channel a command or menu was used in (a thread's parent channel)."""
    channel = interaction.channel
    if interaction.guild_id is None or channel is None:
        return None
    parent = getattr(channel, "parent_id", None)
    channel_id = parent if isinstance(channel, discord.Thread) and parent else channel.id
    return ThreadKey(PLATFORM, str(interaction.guild_id), str(channel_id), "")


def workspace_admin(user: discord.User | discord.Member) -> bool:
    """Manage Server (or Administrator) makes someone an admin of the server's channels."""
    permissions = getattr(user, "guild_permissions", None)
    return bool(permissions and (permissions.manage_guild or permissions.administrator))


def author_of(user: discord.User | discord.Member) -> Author:
    return Author(id=str(user.id), name=user.display_name,
                  roles=tuple(str(r.id) for r in getattr(user, "roles", ())))


class PolicySelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
                   template=SELECT_TEMPLATE):
    """One rule's menu in ``/imagebot settings``."""

    def __init__(self, select: discord.ui.Select[discord.ui.View], rule: str) -> None:
        super().__init__(select)
        self.rule = rule

    @classmethod
    def of(cls, control: Control) -> PolicySelect:
        options = [discord.SelectOption(label=f"{control.label}: {c.label}"[:100],
                                        value=c.value, default=c.value == control.current)
                   for c in control.choices[:25]]
        select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id=f"imagebot:policy:{control.rule}", placeholder=control.label,
            options=options, min_values=1, max_values=1)
        return cls(select, control.rule)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: Match[str], /) -> PolicySelect:
        if not isinstance(item, discord.ui.Select):
            raise TypeError(f"{item!r} is not a select menu")
        return cls(item, match["rule"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        values = (interaction.data or {}).get("values") or []
        await _admin(interaction).choose(interaction, self.rule, str(values[0]) if values
                                         else "")


def settings_view(view: PolicyView) -> discord.ui.View | None:
    """The admin's menus: one row each (Discord allows five)."""
    if not view.controls:
        return None
    menus = discord.ui.View(timeout=None)
    for control in view.controls[:5]:
        menus.add_item(PolicySelect.of(control))
    return menus


def settings_text(view: PolicyView) -> str:
    return view_text(view, bold=bold)[:CONTENT_LIMIT]


group = app_commands.Group(name="imagebot", description="imagebot usage and settings",
                           guild_only=True)


@group.command(name="usage", description="Your images and cost today and this month; "
                                          "admins also see the channel and the server")
async def usage(interaction: discord.Interaction) -> None:
    await _admin(interaction).usage(interaction)


@group.command(name="settings", description="This channel's imagebot rules; admins can "
                                             "change them")
async def settings(interaction: discord.Interaction) -> None:
    await _admin(interaction).settings(interaction)


def _admin(interaction: discord.Interaction) -> DiscordAdmin:
    admin = getattr(getattr(interaction.client, "handlers", None), "admin", None)
    if not isinstance(admin, DiscordAdmin):
        raise TypeError("imagebot's commands run only on imagebot's Discord client")
    return admin


class DiscordAdmin:
    """The ``/imagebot`` command and the settings menus of one Discord adapter."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter
        self.service = adapter.service
        adapter.bot.tree.add_command(group)
        adapter.bot.add_dynamic_items(PolicySelect)

    async def usage(self, interaction: discord.Interaction) -> None:
        where = where_of(interaction)
        if where is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        summary = await self.service.usage_summary(
            where, author_of(interaction.user), workspace_admin=workspace_admin(
                interaction.user))
        await interaction.followup.send(usage_text(summary, bold=bold)[:CONTENT_LIMIT],
                                        ephemeral=True)

    async def settings(self, interaction: discord.Interaction) -> None:
        where = where_of(interaction)
        if where is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = await self.service.policy_view(where, author_of(interaction.user),
                                              workspace_admin=workspace_admin(interaction.user))
        menus = settings_view(view)
        if menus is None:
            await interaction.followup.send(settings_text(view), ephemeral=True)
            return
        await interaction.followup.send(settings_text(view), view=menus, ephemeral=True)
        # Picks come back as dynamic items; discord.py need not watch this view for 15 min.
        menus.stop()

    async def choose(self, interaction: discord.Interaction, rule: str, value: str) -> None:
        where = where_of(interaction)
        if where is None or not await self.adapter.runner.claim(
                f"{PLATFORM}:interaction:{interaction.id}"):
            return
        try:
            view = await self.service.choose(
                where, rule, value, by=author_of(interaction.user),
                workspace_admin=workspace_admin(interaction.user))
        except ImagebotError as exc:
            await interaction.response.send_message(render.error_message(exc.user_message),
                                                    ephemeral=True)
            return
        menus = settings_view(view)
        await interaction.response.edit_message(content=settings_text(view), view=menus)
        if menus is not None:
            menus.stop()
