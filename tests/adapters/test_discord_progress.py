"""Live progress on Discord, end to end: a real discord.py client against the Discord
emulator, with the offline stand-in streaming a Pro answer with gaps between chunks.

The status (the deferred reply of ``/imagine``) is edited with the stage, the elapsed time,
the latest draft image and a Cancel button; the result replaces it and carries a Drafts
button that shows the drafts ephemerally.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest

from adapters.discord import DiscordAdapter
from bot import messages
from bot.model import ThreadKey
from bot.runtime import Core
from tests.emulators.discord import EPHEMERAL, DiscordEmulator, Permission

USER = "1400000000000000001"
OTHER = "1400000000000000002"
MOD = "1400000000000000003"
JSON = dict[str, Any]


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    emu = DiscordEmulator()
    await emu.start()
    emu.add_member(USER, "Alice")
    emu.add_member(OTHER, "Bob")
    emu.add_member(MOD, "Mod", permissions=int(Permission.MANAGE_MESSAGES)
                   | int(Permission.VIEW_CHANNEL) | int(Permission.SEND_MESSAGES))
    defaults = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield emu
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = defaults
        await emu.stop()


@pytest.fixture
async def bot(core_factory: Any, emulator: DiscordEmulator,
              stand_in: Any) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    stand_in.stream_gap = 0.6
    async with core_factory(discord_token=emulator.token, discord_api_base=emulator.api_base,
                            discord_gateway_url=emulator.gateway_url) as core:
        adapter = DiscordAdapter(core, guild_ready_timeout=0.05, tick=0.3)
        await adapter.start()
        try:
            yield core, adapter
        finally:
            await adapter.stop()


def custom_ids(message: JSON) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or ()
            for c in row["components"]]


def edits(emulator: DiscordEmulator, token: str) -> list[Any]:
    return emulator.rest_calls("PATCH", f"/webhooks/{emulator.app_id}/{token}")


def content(call: Any) -> str:
    return str((call.json or {}).get("content") or "")


async def settled(emulator: DiscordEmulator, adapter: DiscordAdapter) -> None:
    await emulator.wait_for(lambda: adapter.status()["tasks"] == 0)


async def test_the_status_shows_the_draft_and_elapsed_time_before_the_result(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator) -> None:
    _core, adapter = bot
    record = await emulator.slash_command("imagine", {"prompt": "a lighthouse in a storm"},
                                          user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)

    calls = edits(emulator, record.token)
    result = next(i for i, c in enumerate(calls) if "Here is an offline preview" in content(c))
    before = calls[:result]
    drafts = [c for c in before if any(name.startswith("imagebot-draft-")
                                       for name, _data, _type in c.files)]
    assert len(drafts) == 2, "each draft was shown on the status as it came"
    assert re.search(r"^⏳ Drawing… \d+ s · 1 draft · Nano Banana Pro", content(drafts[0]))
    assert messages.draft_caption(1) in content(drafts[0])
    assert any(re.search(r"… [1-9]\d* s · ", content(c)) for c in before), "elapsed time"
    assert any("💭 Composing the offline preview" in content(c) for c in before)
    ticks = [c for c in before if c.json and "attachments" not in c.json and not c.files]
    assert ticks, "elapsed-time edits leave the draft attached"
    statuses = [c for c in before if "⏳" in content(c)]
    assert all("imagebot:cancel:" in str(c.json.get("components")) for c in statuses), "Cancel"

    head = record.original
    assert head is not None
    assert [a["filename"] for a in head["attachments"]] == [
        a["filename"] for a in head["attachments"] if not a["filename"].startswith(
            "imagebot-draft-")], "the result replaced the draft"
    turn = custom_ids(head)[0].rsplit(":", 1)[1]
    assert f"imagebot:drafts:{turn}" in custom_ids(head)

    shown = await emulator.click_button(head, f"imagebot:drafts:{turn}", user_id=OTHER,
                                        channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(shown.original and shown.original["attachments"]))
    answer = shown.original
    assert answer["flags"] & EPHEMERAL and answer["content"] == messages.DRAFTS_HEADING
    assert [a["filename"].split(".")[0] for a in answer["attachments"]] == [
        "imagebot-draft-1", "imagebot-draft-2"]


async def test_cancel_mid_stream_leaves_the_thread_as_it_was(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    core, adapter = bot
    stand_in.stream_gap = 0
    starter = await emulator.send_message(emulator.channel_id, USER, "a castle",
                                          mentions_bot=True)
    thread_id = starter["id"]
    await emulator.wait_for(lambda: any(m["attachments"] for m in emulator.messages_in(thread_id)
                                        if m["author"]["id"] == emulator.bot_user_id))
    await settled(emulator, adapter)
    key = ThreadKey("discord", emulator.guild_id, emulator.channel_id, thread_id)
    before = [t.id for t in await core.service.history(key)]

    stand_in.stream_gap = 0.6
    await emulator.send_message(thread_id, USER, "add a moat")

    def status() -> JSON | None:
        return next((m for m in emulator.messages_in(thread_id)
                     if any(i.startswith("imagebot:cancel:") for i in custom_ids(m))
                     and any(a["filename"].startswith("imagebot-draft-")
                             for a in m["attachments"])), None)

    await emulator.wait_for(lambda: status() is not None)
    message = status()
    assert message is not None
    [cancel] = [i for i in custom_ids(message) if i.startswith("imagebot:cancel:")]
    refused = await emulator.click_button(message, cancel, user_id=OTHER, channel_id=thread_id)
    await emulator.wait_for(lambda: refused.original is not None)
    assert refused.ephemeral and refused.original["content"] == messages.CANCEL_NOT_YOURS
    done = await emulator.click_button(message, cancel, user_id=USER, channel_id=thread_id)
    await settled(emulator, adapter)
    assert done.callbacks == [{"type": 6}]
    cancelled = emulator.find_message(message["id"])
    assert cancelled is not None and "Cancelled by Alice" in cancelled["content"]
    assert cancelled["attachments"] == [] and custom_ids(cancelled) == []
    assert [t.id for t in await core.service.history(key)] == before


async def test_a_moderator_may_cancel_anyones_turn(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator) -> None:
    _core, adapter = bot
    record = await emulator.slash_command("imagine", {"prompt": "a slow sunrise"},
                                          user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original and any(
        i.startswith("imagebot:cancel:") for i in custom_ids(record.original))))
    [cancel] = [i for i in custom_ids(record.original) if i.startswith("imagebot:cancel:")]
    await emulator.click_button(record.original, cancel, user_id=MOD,
                                channel_id=emulator.channel_id)
    await settled(emulator, adapter)
    assert "Cancelled by Mod" in record.original["content"]
    assert record.original["id"] not in emulator.threads, "no result, so no thread"
