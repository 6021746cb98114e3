"""The discord.py client: intents, ``/imagine``, "Edit with Gemini", buttons and the modal.

It only translates Discord's callbacks into calls on :class:`Handlers` (the adapter).

Intents: Guilds and Guild Messages, plus Message Content when the application has it
enabled in the Developer Portal (read from the application's flags at login, so the
gateway never refuses the connection). Without it, Discord sends a message's text only
when it mentions the bot, so follow-ups in a thread must mention the bot too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from re import Match
from typing import Any, Protocol

import discord
from discord import app_commands

from adapters.discord import render
from adapters.discord.inbound import (
    BUTTON_TEMPLATE,
    CANCEL_TEMPLATE,
    MODEL_CHOICES,
    BatchRequest,
    FileRef,
    TurnRequest,
    cancel_id,
    imagine_request,
)
from bot.options import ASPECT_RATIOS, IMAGE_SIZES, OptionInput

logger = logging.getLogger(__name__)

PROMPT_LIMIT = 2000
#: The Batch API runs the Gemini image models only.
BATCH_MODELS = (("Nano Banana", "flash"), ("Nano Banana Pro", "pro"))
#: What the bot needs in a channel; Manage Messages is not needed (it deletes only its own).
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True,
    create_public_threads=True, attach_files=True, embed_links=True,
    read_message_history=True)
_STYLES = {"primary": discord.ButtonStyle.primary, "secondary": discord.ButtonStyle.secondary,
           "danger": discord.ButtonStyle.danger}


class Handlers(Protocol):
    """What the client calls; :class:`adapters.discord.adapter.DiscordAdapter` answers."""

    async def imagine(self, interaction: discord.Interaction, request: TurnRequest) -> None: ...

    async def edit_menu(self, interaction: discord.Interaction,
                        message: discord.Message) -> None: ...

    async def button(self, interaction: discord.Interaction, action: str,
                     turn_id: str) -> None: ...

    async def message(self, message: discord.Message) -> None: ...

    async def batch(self, interaction: discord.Interaction, request: BatchRequest) -> None: ...

    async def batch_cancel(self, interaction: discord.Interaction, job_id: str) -> None: ...


class ImageBot(discord.Client):
    """A ``discord.Client`` with imagebot's commands and persistent buttons."""

    def __init__(self, handlers: Handlers, *, guild_ids: Sequence[str] = (),
                 guild_ready_timeout: float = 2.0, **client_options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        # The connection identifies with this very object, so setup_hook can still
        # drop Message Content before the gateway connects.
        self.requested_intents = intents
        # imagebot has no voice: no "PyNaCl/davey is not installed" warning on every start.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(),
                         guild_ready_timeout=guild_ready_timeout, **client_options)
        self.handlers = handlers
        self.guild_ids = tuple(int(g) for g in guild_ids)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(imagine)
        self.tree.add_command(batch)
        self.tree.add_command(edit_with_gemini)

    @property
    def reads_all_messages(self) -> bool:
        """True with the Message Content intent; otherwise only mentions carry text."""
        return self.requested_intents.message_content

    async def setup_hook(self) -> None:
        self._choose_message_content()
        self.add_dynamic_items(TurnButton, BatchCancelButton)
        await self._sync_commands()

    def _choose_message_content(self) -> None:
        flags = self.application_flags
        granted = flags.gateway_message_content or flags.gateway_message_content_limited
        self.requested_intents.message_content = granted
        if not granted:
            logger.warning(
                "the Message Content intent is not enabled for this application, so messages "
                "in imagebot threads must mention the bot; enable it under Bot > Privileged "
                "Gateway Intents in the Discord Developer Portal to continue without mentions")

    async def _sync_commands(self) -> None:
        """Guild commands appear at once; global ones can take a while to propagate."""
        try:
            if not self.guild_ids:
                await self.tree.sync()
                return
            for guild_id in self.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # Mentions and buttons still work; only the commands are missing.
            logger.error("syncing application commands failed: HTTP %s %s", exc.status, exc.text)

    async def on_message(self, message: discord.Message) -> None:
        await self.handlers.message(message)


class ShardedImageBot(ImageBot, discord.AutoShardedClient):
    """The same bot on discord.py's ``AutoShardedClient``: one gateway connection per shard
    (``DISCORD_SHARD_COUNT`` in all, ``DISCORD_SHARD_IDS`` of them in this worker)."""


def make_bot(handlers: Handlers, *, guild_ids: Sequence[str] = (),
             guild_ready_timeout: float = 2.0, shard_count: int | None = None,
             shard_ids: Sequence[str] = ()) -> ImageBot:
    """A plain client, or a sharded one when a shard count is configured."""
    if shard_count is None:
        return ImageBot(handlers, guild_ids=guild_ids, guild_ready_timeout=guild_ready_timeout)
    return ShardedImageBot(handlers, guild_ids=guild_ids,
                           guild_ready_timeout=guild_ready_timeout, shard_count=shard_count,
                           shard_ids=[int(i) for i in shard_ids] or None)


def shard_states(bot: discord.Client) -> dict[str, dict[str, Any]]:
    """Each shard this worker runs: connected, and its heartbeat latency (seconds)."""
    if not isinstance(bot, discord.AutoShardedClient):
        return {}
    states = {}
    for shard_id, info in sorted(bot.shards.items()):
        latency = info.latency
        states[str(shard_id)] = {"connected": not info.is_closed(),
                                 "latency": round(latency, 3) if math.isfinite(latency)
                                 else None}
    return states


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot with its commands and exactly these permissions."""
    return discord.utils.oauth_url(application_id, permissions=REQUIRED_PERMISSIONS,
                                   scopes=("bot", "applications.commands"))


def _handlers(interaction: discord.Interaction) -> Handlers:
    client = interaction.client
    if not isinstance(client, ImageBot):
        raise TypeError("imagebot's commands run only on an ImageBot client")
    return client.handlers


@app_commands.command(name="imagine", description="Make or edit an image with Gemini")
@app_commands.describe(
    prompt="What to draw, or what to change in the attached images",
    image1="A reference image", image2="Another reference image",
    image3="Another reference image", aspect_ratio="Shape of the image",
    resolution="Image size (Nano Banana Pro only)", model="Which model draws it",
    search="Ground the answer on Google Search (Nano Banana Pro only)",
    count="How many candidates to make at once (1-4), each with a Use button")
@app_commands.choices(
    aspect_ratio=[app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS],
    resolution=[app_commands.Choice(name=s, value=s) for s in IMAGE_SIZES],
    model=[app_commands.Choice(name=label, value=alias) for label, alias in MODEL_CHOICES])
@app_commands.guild_only()
async def imagine(interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 4000],
                  image1: discord.Attachment | None = None,
                  image2: discord.Attachment | None = None,
                  image3: discord.Attachment | None = None,
                  aspect_ratio: str | None = None, resolution: str | None = None,
                  model: str | None = None, search: bool | None = None,
                  count: app_commands.Range[int, 1, 4] | None = None) -> None:
    request = imagine_request(prompt, images=(image1, image2, image3),
                              aspect_ratio=aspect_ratio, resolution=resolution,
                              model=model, search=search, count=count)
    await _handlers(interaction).imagine(interaction, request)


@app_commands.command(name="batch", description="Many prompts as one Batch API job, at half "
                                                  "price; results come within hours")
@app_commands.describe(
    prompts="Prompts separated by | (a part of flags alone, like --ar 16:9, sets them for all)",
    file="A .txt (one prompt per line), .csv (a prompt column) or .jsonl of prompts",
    image1="A reference image for every prompt", image2="Another reference image",
    model="Which model draws them", aspect_ratio="Shape of the images",
    resolution="Image size (Nano Banana Pro only)",
    search="Ground on Google Search (Nano Banana Pro only)")
@app_commands.choices(
    aspect_ratio=[app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS],
    resolution=[app_commands.Choice(name=s, value=s) for s in IMAGE_SIZES],
    model=[app_commands.Choice(name=label, value=alias) for label, alias in BATCH_MODELS])
@app_commands.guild_only()
async def batch(interaction: discord.Interaction,
                prompts: app_commands.Range[str, 1, 4000] | None = None,
                file: discord.Attachment | None = None,
                image1: discord.Attachment | None = None,
                image2: discord.Attachment | None = None, model: str | None = None,
                aspect_ratio: str | None = None, resolution: str | None = None,
                search: bool | None = None) -> None:
    request = BatchRequest(
        prompts=prompts or "", file=FileRef.of(file) if file else None,
        images=tuple(FileRef.of(a) for a in (image1, image2) if a is not None),
        options=OptionInput(model=model, aspect_ratio=aspect_ratio, size=resolution,
                            search=search))
    await _handlers(interaction).batch(interaction, request)


@app_commands.context_menu(name="Edit with Gemini")
@app_commands.guild_only()
async def edit_with_gemini(interaction: discord.Interaction, message: discord.Message) -> None:
    await _handlers(interaction).edit_menu(interaction, message)


class TurnButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
                 template=BUTTON_TEMPLATE):
    """Reroll, 4K or Delete for one turn; the custom id carries both, so a click is
    answered by whichever process runs when it comes (no view state to lose)."""

    def __init__(self, button: discord.ui.Button[discord.ui.View], action: str,
                 turn_id: str) -> None:
        super().__init__(button)
        self.action = action
        self.turn_id = turn_id

    @classmethod
    def of(cls, spec: render.Button) -> TurnButton:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=spec.label, style=_STYLES[spec.style], emoji=spec.emoji,
            custom_id=spec.custom_id)
        return cls(button, spec.action, spec.turn_id)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: Match[str], /) -> TurnButton:
        if not isinstance(item, discord.ui.Button):
            raise TypeError(f"{item!r} is not a button")
        return cls(item, match["action"], match["turn"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handlers(interaction).button(interaction, self.action, self.turn_id)


class BatchCancelButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
                        template=CANCEL_TEMPLATE):
    """Cancel one batch; the custom id carries the job id, so it works after restarts."""

    def __init__(self, button: discord.ui.Button[discord.ui.View], job_id: str) -> None:
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    def of(cls, job_id: str) -> BatchCancelButton:
        return cls(discord.ui.Button(label="Cancel batch", style=discord.ButtonStyle.danger,
                                     custom_id=cancel_id(job_id)), job_id)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: Match[str], /
                             ) -> BatchCancelButton:
        if not isinstance(item, discord.ui.Button):
            raise TypeError(f"{item!r} is not a button")
        return cls(item, match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handlers(interaction).batch_cancel(interaction, self.job_id)


PromptCallback = Callable[[discord.Interaction, str], Awaitable[None]]


class PromptModal(discord.ui.Modal, title="Edit with Gemini"):
    """Asks what to change in the images of the message "Edit with Gemini" was used on."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, custom_id="prompt",
        placeholder="Make it a night scene --ar 16:9", max_length=PROMPT_LIMIT)

    def __init__(self, *, custom_id: str, on_prompt: PromptCallback, timeout: float) -> None:
        super().__init__(custom_id=custom_id, timeout=timeout)
        self._on_prompt = on_prompt

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._on_prompt(interaction, self.prompt.value)


def gateway_failure(error: BaseException | None) -> str:
    """Why the gateway would not connect, and what to change."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return ("Discord refused the gateway intents. Enable Message Content Intent under "
                "Bot > Privileged Gateway Intents in the Developer Portal, or turn it off there "
                "completely (imagebot then works with mentions).")
    if isinstance(error, discord.ConnectionClosed):
        return f"The Discord gateway closed the connection (code {error.code}: {error.reason})."
    reason = type(error).__name__ if error else "it stopped"
    return f"Could not connect to the Discord gateway ({reason}). Check DISCORD_GATEWAY_URL."
