"""Discord: ``/imagine``, "Edit with Gemini", mentions, thread sessions and result buttons.

``DiscordAdapter`` is what ``imagebot serve`` runs when DISCORD_TOKEN is set; see
:mod:`adapters.discord.adapter`. Modules here import the discord.py library absolutely
(``import discord``), which this package's name does not shadow.
"""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
