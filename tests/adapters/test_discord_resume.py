"""A Discord turn whose worker died is taken over: the real discord.py client (DiscordAdapter)
against the Discord emulator posts it in the session thread as a channel message, with the
bot token (the dead worker's interaction token is never used)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from adapters.discord import DiscordAdapter, resume
from adapters.discord.inbound import FileRef
from adapters.discord.reporter import StatusMessage, TurnReporter
from adapters.resume import RESUMED, Resumer
from adapters.turns import Ticket, TurnDescription
from bot.leases import MAX_ADOPTIONS, Place, ThreadLines
from bot.model import Author, IncomingMessage
from bot.progress import Progress
from bot.runtime import Core
from tests import corpus
from tests.adapters import test_discord as discord_tests
from tests.adapters.test_discord import USER, bot_messages, key_for, results, settled
from tests.emulators.discord import DiscordEmulator

# The Discord end-to-end fixtures: the emulator, and a started adapter on a core.
emulator = discord_tests.emulator
open_bot = discord_tests.open_bot
bot = discord_tests.bot


async def test_a_dead_workers_discord_turn_is_posted_in_its_thread(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    core, adapter = bot
    starter = await emulator.send_message(emulator.channel_id, USER, "a lighthouse",
                                          mentions_bot=True)
    thread_id = starter["id"]
    await emulator.wait_for(lambda: bool(results(emulator, thread_id)))
    await settled(emulator, adapter)
    key = key_for(emulator, thread_id)

    # Another worker accepted "at night" (with an image on Discord's CDN), then died.
    photo = emulator.add_attachment("dusk.png", corpus.png(64, 48), "image/png")
    files = (FileRef(name="dusk.png", url=photo["url"], size=photo["size"],
                            content_type="image/png"),)
    dead = ThreadLines(core.service.store, ttl=0.3)
    place = dead.place(key)
    assert isinstance(place, Place)
    accepted = Ticket.new(USER)
    place.request = dataclasses.replace(resume.message_turn(
        IncomingMessage(Author(USER, "Alice"), "at night --ar 16:9"), files),
        ticket=accepted.id).to_json()
    await place.__aenter__()
    # It had shown its status, with a Cancel button for its ticket, before it died.
    channel = adapter._thread_channel(key)
    shown = TurnReporter(StatusMessage(channel), channel, upload_limit=8 << 20, alt="",
                         tick=0.2, ticket=accepted.id)
    await shown.progress(Progress.queued(1))
    [stale] = [m for m in bot_messages(emulator, thread_id) if accepted.id in json.dumps(m)]
    await dead.close()
    await asyncio.sleep(0.4)

    [orphan] = await core.service.store.line_orphans(MAX_ADOPTIONS)
    resumer = Resumer(core.service, core.service.lines, {"discord": adapter})
    await resumer.offer(orphan)
    await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 2)
    await settled(emulator, adapter)

    assert resumer.resumed == 1 and len(stand_in.generations) == 2
    resumed = results(emulator, thread_id)[-1]
    assert RESUMED in resumed["content"]
    body = stand_in.generations[-1].body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert any("inlineData" in p or "inline_data" in p for p in body["contents"][-1]["parts"])
    turns = await core.service.history(key)
    assert [t.prompt for t in turns] == ["a lighthouse", "at night"]
    assert turns[-1].options["aspect_ratio"] == "16:9" and turns[-1].platform_refs
    assert not emulator.rest_calls("PATCH", "/webhooks"), "no interaction token used"
    # The stale status became the resumed turn's status, then its result: no dead Cancel.
    assert resumed["id"] == stale["id"]
    assert not [m for m in bot_messages(emulator, thread_id) if accepted.id in json.dumps(m)]


async def test_a_thread_message_turn_carries_its_description_in_the_line(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    core, adapter = bot
    starter = await emulator.send_message(emulator.channel_id, USER, "a castle",
                                          mentions_bot=True)
    thread_id = starter["id"]
    await emulator.wait_for(lambda: bool(results(emulator, thread_id)))
    await settled(emulator, adapter)
    stand_in.faults.latency = 1.0
    photo = emulator.add_attachment("moat.png", corpus.png(64, 48), "image/png",
                                    channel_id=thread_id)
    await emulator.send_message(thread_id, USER, "add a moat --ar 3:2", attachments=[photo])
    await emulator.wait_for(lambda: len(stand_in.generations) == 2)
    async with core.service.store.db.execute("SELECT request FROM thread_line") as cur:
        [(stored,)] = list(await cur.fetchall())
    turn = TurnDescription.from_json(stored)
    assert (turn.platform, turn.kind, turn.requester, turn.text) == (
        "discord", "message", USER, "add a moat --ar 3:2")
    assert [f["name"] for f in turn.files] == ["moat.png"] and turn.ticket
    await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 2)
    await settled(emulator, adapter)
