"""The Discord adapter end to end: a real discord.py client (DiscordAdapter) against the
Discord emulator, with the real Gemini SDK against the offline stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from adapters.discord import DiscordAdapter, render
from adapters.discord.reporter import StatusMessage, TurnReporter
from adapters.serve import ShardCollector, running
from bot import messages
from bot.images import image_info, sha256
from bot.model import Reply, ReplyImage, ReplyPart, ThreadKey, Usage
from bot.options import PRO
from bot.runtime import Core
from tests import corpus
from tests.emulators.discord import EPHEMERAL, DiscordEmulator, Intent

USER = "1400000000000000001"
OTHER = "1400000000000000002"
JSON = dict[str, Any]
Opener = Callable[..., contextlib.AbstractAsyncContextManager[tuple[Core, DiscordAdapter]]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[DiscordEmulator]:
    options = getattr(request, "param", {})
    emu = DiscordEmulator(**options)
    await emu.start()
    emu.add_member(USER, "Alice")
    emu.add_member(OTHER, "Bob")
    defaults = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield emu
    finally:
        restored = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = defaults
        await emu.stop()
        assert restored == defaults, "the adapter restores discord.py's endpoints on stop"


@pytest.fixture
def open_bot(core_factory: Any, emulator: DiscordEmulator) -> Opener:
    """Opens a core and a started DiscordAdapter on it; several may be opened in turn."""

    @contextlib.asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
        settings = {"discord_token": emulator.token, "discord_api_base": emulator.api_base,
                    "discord_gateway_url": emulator.gateway_url, **overrides}
        async with core_factory(**settings) as core:
            before = asyncio.all_tasks()
            adapter = DiscordAdapter(core, guild_ready_timeout=0.05, tick=0.2)
            await adapter.start()
            try:
                yield core, adapter
            finally:
                await adapter.stop()
                await core.service.files.drain()  # the core's own uploads end with the core
                await asyncio.sleep(0)
                current = asyncio.current_task()
                # The local servers' keep-alive handlers belong to them, not to the bot.
                leaked = [t for t in asyncio.all_tasks() - before
                          if t is not current and not t.done()
                          and not t.get_coro().__qualname__.startswith("RequestHandler.")]
                assert not leaked, leaked

    return opened


@pytest.fixture
async def bot(open_bot: Opener) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    async with open_bot() as running:
        yield running


# --------------------------------------------------------------------------- helpers


def bot_messages(emulator: DiscordEmulator, channel_id: str) -> list[JSON]:
    return [m for m in emulator.messages_in(channel_id)
            if m["author"]["id"] == emulator.bot_user_id and m["type"] != 18]


def results(emulator: DiscordEmulator, *channel_ids: str) -> list[JSON]:
    return [m for c in channel_ids for m in bot_messages(emulator, c) if m["attachments"]]


def custom_ids(message: JSON) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


def turn_of(message: JSON) -> str:
    return custom_ids(message)[0].rsplit(":", 1)[1]


def inline_parts(body: JSON) -> list[JSON]:
    parts = body["contents"][-1]["parts"]
    return [p.get("inlineData") or p["inline_data"] for p in parts
            if "inlineData" in p or "inline_data" in p]


def mime(part: JSON) -> str:
    return str(part.get("mimeType") or part.get("mime_type"))


def prompt_of(body: JSON) -> str:
    return " ".join(p["text"] for p in body["contents"][-1]["parts"] if "text" in p)


def key_for(emulator: DiscordEmulator, thread_id: str) -> ThreadKey:
    return ThreadKey("discord", emulator.guild_id, emulator.channel_id, thread_id)


async def settled(emulator: DiscordEmulator, adapter: DiscordAdapter) -> None:
    """Waits until the adapter has no turn or task left (result posted, refs saved)."""
    await emulator.wait_for(lambda: adapter.status()["tasks"] == 0)


async def imagine(emulator: DiscordEmulator, adapter: DiscordAdapter, prompt: str,
                  **options: Any) -> JSON:
    """Runs ``/imagine`` in the text channel and waits for the result and its thread."""
    record = await emulator.slash_command("imagine", {"prompt": prompt, **options},
                                          user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)
    assert record.original is not None
    return record.original


# --------------------------------------------------------------------------- sessions


async def test_slash_command_opens_a_thread_that_later_messages_continue(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    core, adapter = bot
    cat = emulator.add_attachment("cat.png", corpus.png(), "image/png")
    record = await emulator.slash_command(
        "imagine", {"prompt": "a cat in a hat", "aspect_ratio": "16:9", "resolution": "2K",
                    "model": "pro"},
        user_id=USER, channel_id=emulator.channel_id, attachments={"image1": cat})
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)

    assert record.callbacks == [{"type": 5}]
    head = record.original
    assert head is not None and head["attachments"][0]["content_type"] == "image/png"
    assert "Here is an offline preview" in head["content"]
    assert "Nano Banana Pro · 2K · 16:9" in head["embeds"][0]["footer"]["text"]
    turn = turn_of(head)
    assert custom_ids(head) == [f"imagebot:reroll:{turn}", f"imagebot:4k:{turn}",
                                f"imagebot:delete:{turn}", f"imagebot:drafts:{turn}"]
    first = stand_in.generations[-1].body
    assert prompt_of(first) == "a cat in a hat"
    assert [mime(p) for p in inline_parts(first)] == ["image/png"]
    assert first["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    patches = emulator.rest_calls("PATCH", f"/webhooks/{emulator.app_id}/{record.token}")
    assert any("Generating… 0 s · Nano Banana Pro · 2K · 16:9" in (c.json or {}).get(
        "content", "") for c in patches), "the deferred message shows the real status"
    assert emulator.rest_calls("POST", f"/channels/{emulator.channel_id}/typing")

    thread_id = head["id"]
    dog = emulator.add_attachment("dog.jpg", corpus.jpeg(), "image/jpeg", channel_id=thread_id)
    await emulator.send_message(thread_id, USER, "now make it night", attachments=[dog])
    await emulator.wait_for(lambda: bool(results(emulator, thread_id)))
    await settled(emulator, adapter)

    second = stand_in.generations[-1].body
    assert [c["role"] for c in second["contents"]] == ["user", "model", "user"]
    assert prompt_of(second) == "now make it night"
    assert [mime(p) for p in inline_parts(second)] == ["image/jpeg"]
    assert second["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9", "settings stick"
    assert any(dog["id"] in c.path for c in emulator.cdn_requests)
    assert len(bot_messages(emulator, thread_id)) == 1, "the status message became the result"
    turns = await core.service.store.list_turns(key_for(emulator, thread_id))
    assert len(turns) == 2 and turns[1].platform_refs["messages"] == [
        [thread_id, bot_messages(emulator, thread_id)[0]["id"]]]


async def test_a_mention_starts_a_thread_from_the_message(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    core, adapter = bot
    starter = await emulator.send_message(emulator.channel_id, USER, "a lighthouse --ar 3:2",
                                          mentions_bot=True)
    thread_id = starter["id"]
    await emulator.wait_for(lambda: bool(results(emulator, thread_id)))
    await settled(emulator, adapter)

    assert emulator.threads[thread_id]["name"] == "a lighthouse"
    assert prompt_of(stand_in.generations[-1].body) == "a lighthouse"
    result = bot_messages(emulator, thread_id)[0]
    assert "3:2" in result["embeds"][0]["footer"]["text"]
    edits = emulator.rest_calls("PATCH", f"/channels/{thread_id}/messages/{result['id']}")
    assert edits[-1].multipart and edits[-1].files[0][0].endswith(".png")
    assert await core.service.store.thread_exists(key_for(emulator, thread_id))

    await emulator.dispatch("MESSAGE_CREATE", starter)  # delivered again: acted on once
    await emulator.wait_for(lambda: adapter.status()["duplicates_dropped"] == 1)
    assert len(stand_in.generations) == 1 and len(bot_messages(emulator, thread_id)) == 1


async def test_an_interleaved_answer_posts_in_the_models_order(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator) -> None:
    core, adapter = bot
    gif = emulator.add_attachment("spin.gif", corpus.animated_gif(), "image/gif")
    starter = await emulator.send_message(emulator.channel_id, USER, "a pancake recipe",
                                          mentions_bot=True, attachments=[gif])
    thread_id = starter["id"]
    await emulator.wait_for(lambda: any(m["components"]
                                        for m in bot_messages(emulator, thread_id)))
    await settled(emulator, adapter)

    posted = bot_messages(emulator, thread_id)
    assert len(posted) in (2, 3)
    assert [re.findall(r"Step (\d) of", m["content"]) for m in posted] == [
        [str(k)] for k in range(1, len(posted) + 1)]
    assert all(len(m["attachments"]) == 1 for m in posted)
    assert "converted GIF to PNG" in posted[0]["content"]
    assert [bool(m["components"]) for m in posted] == [False] * (len(posted) - 1) + [True]
    [turn] = await core.service.store.list_turns(key_for(emulator, thread_id))
    assert turn.platform_refs["messages"] == [[thread_id, m["id"]] for m in posted]


async def test_a_second_message_waits_for_the_first(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    _core, adapter = bot
    stand_in.faults.latency = 0.5
    starter = await emulator.send_message(emulator.channel_id, USER, "a castle",
                                          mentions_bot=True)
    thread_id = starter["id"]
    await emulator.wait_for(lambda: len(stand_in.generations) == 1)
    await emulator.send_message(thread_id, USER, "add a moat")
    await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 2)
    await settled(emulator, adapter)

    statuses = [c.json["content"] for c in
                emulator.rest_calls("POST", f"/channels/{thread_id}/messages")]
    assert statuses[0].startswith("⏳ Generating… 0 s · Nano Banana Pro")
    assert statuses[1] == render.status_text(messages.QUEUED, None)
    body = stand_in.generations[-1].body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert prompt_of(body) == "add a moat"


async def test_edit_with_gemini_opens_a_modal_and_uses_the_images(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    _core, adapter = bot
    photo = emulator.add_attachment("photo.png", corpus.png(80, 60), "image/png")
    target = await emulator.send_message(emulator.channel_id, USER, "look", attachments=[photo])
    menu = await emulator.message_command("Edit with Gemini", target, user_id=USER,
                                          channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: menu.modal is not None)
    assert menu.modal is not None and menu.modal["title"] == "Edit with Gemini"

    submit = await emulator.submit_modal(menu.modal["custom_id"],
                                         {"prompt": "make it a night scene --ar 1:1"},
                                         user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(submit.original and submit.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)
    body = stand_in.generations[-1].body
    assert prompt_of(body) == "make it a night scene"
    assert len(inline_parts(body)) == 1
    assert submit.original is not None and submit.original["attachments"]

    words = await emulator.send_message(emulator.channel_id, USER, "no pictures here")
    refused = await emulator.message_command("Edit with Gemini", words, user_id=USER,
                                             channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: refused.original is not None)
    assert refused.ephemeral and refused.original is not None
    assert refused.original["content"] == render.NO_IMAGES


# --------------------------------------------------------------------------- buttons


async def test_buttons_work_after_a_restart(open_bot: Opener, emulator: DiscordEmulator,
                                            stand_in: Any) -> None:
    async with open_bot() as (_core, adapter):
        head = await imagine(emulator, adapter, "a red fox")
    turn, thread_id, channel = turn_of(head), head["id"], emulator.channel_id

    async with open_bot() as (core, adapter):
        reroll = await emulator.click_button(head, f"imagebot:reroll:{turn}", user_id=OTHER,
                                             channel_id=channel)
        await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 1)
        await settled(emulator, adapter)
        assert reroll.callbacks == [{"type": 6}]
        assert prompt_of(stand_in.generations[-1].body) == "a red fox"

        await emulator.click_button(head, f"imagebot:4k:{turn}", user_id=USER,
                                    channel_id=channel)
        await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 2)
        await settled(emulator, adapter)
        request = stand_in.generations[-1]
        assert request.model == PRO
        assert request.body["generationConfig"]["imageConfig"]["imageSize"] == "4K"
        four_k = results(emulator, thread_id)[-1]
        assert max(four_k["attachments"][0]["width"], four_k["attachments"][0]["height"]) >= 4000
        assert custom_ids(four_k)[1].startswith("imagebot:delete:"), "no 4K button on a 4K result"

        refused = await emulator.click_button(head, f"imagebot:delete:{turn}", user_id=OTHER,
                                              channel_id=channel)
        await emulator.wait_for(lambda: refused.original is not None)
        assert refused.ephemeral and refused.original is not None
        assert refused.original["content"] == render.NOT_YOURS
        assert emulator.find_message(head["id"]) is not None

        deleted = await emulator.click_button(head, f"imagebot:delete:{turn}", user_id=USER,
                                              channel_id=channel)
        await emulator.wait_for(lambda: bool(deleted.original
                                             and deleted.original["content"] == messages.DELETED))
        assert deleted.original is not None and deleted.original["flags"] & EPHEMERAL
        assert emulator.find_message(head["id"]) is None
        record = await core.service.store.get_turn(turn)
        assert record is not None and record.deleted
        assert len(results(emulator, thread_id)) == 2, "other results stay"


# --------------------------------------------------------------------------- limits and faults


async def test_an_image_over_the_upload_limit_is_reencoded(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator) -> None:
    _core, adapter = bot
    limit = 20_000  # the stand-in's 1K PNG is about 30 KB
    emulator.guild_upload_limit = limit
    record = await emulator.slash_command("imagine", {"prompt": "a detailed city at dusk"},
                                          user_id=USER, channel_id=emulator.channel_id,
                                          attachment_size_limit=limit)
    await emulator.wait_for(lambda: bool(record.original and record.original["attachments"]))
    await settled(emulator, adapter)
    head = record.original
    assert head is not None
    upload = head["attachments"][0]
    assert upload["filename"].endswith(".jpg") and upload["size"] <= limit
    assert upload["content_type"] == "image/jpeg"
    assert "upload limit, so it is posted as a high-quality JPEG" in head["content"]


async def test_a_refused_upload_is_reported(bot: tuple[Core, DiscordAdapter],
                                            emulator: DiscordEmulator) -> None:
    _core, adapter = bot
    emulator.guild_upload_limit = 1000  # the guild's tier says 10 MB; Discord says no
    starter = await emulator.send_message(emulator.channel_id, USER, "a kite",
                                          mentions_bot=True)
    await emulator.wait_for(lambda: any("did not accept the upload" in m["content"]
                                        for m in bot_messages(emulator, starter["id"])))
    await settled(emulator, adapter)
    posted = bot_messages(emulator, starter["id"])
    assert len(posted) == 1 and "HTTP 413" in posted[0]["content"]
    assert posted[0]["embeds"] and custom_ids(posted[0]), "footer and buttons still shown"


async def test_a_refused_upload_after_a_long_answer_still_says_so(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator) -> None:
    """About 24k characters and an image: the note about the image is never cut off."""
    _core, adapter = bot
    emulator.guild_upload_limit = 100  # the guild's tier says 10 MiB; Discord says no
    channel = adapter.bot.get_channel(int(emulator.channel_id))
    assert isinstance(channel, discord.TextChannel)
    data = corpus.png()
    assert len(data) > emulator.guild_upload_limit
    mime_type, width, height = image_info(data)
    paragraphs = "\n\n".join(f"{k} " + "word " * 397 for k in range(12))
    reply = Reply(turn_id="f" * 32, thread=key_for(emulator, emulator.channel_id),
                  parts=(ReplyPart(kind="text", text=paragraphs),
                         ReplyPart(kind="image", image=ReplyImage(
                             data, mime_type, width, height, sha256(data)))),
                  model=PRO, elapsed=1.0, usage=Usage(total_tokens=1))
    reporter = TurnReporter(StatusMessage(channel), channel,
                            upload_limit=channel.guild.filesize_limit, tick=0.2)
    refs = await reporter.finished(reply)

    posted = bot_messages(emulator, emulator.channel_id)
    statuses = [c.status for c in
                emulator.rest_calls("POST", f"/channels/{emulator.channel_id}/messages")]
    assert statuses.count(413) == 1
    *answer, note = posted
    assert "".join(m["content"] for m in answer).count("word") == 12 * 397
    assert note["content"].startswith("⚠️ Discord did not accept the upload of the image")
    assert note["content"].endswith("Reroll makes a new one.")
    assert note["embeds"] and custom_ids(note), "the note closes the reply"
    assert refs["messages"] == [[emulator.channel_id, m["id"]] for m in posted]


async def test_a_file_on_another_port_of_the_cdn_host_is_not_fetched(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    _core, adapter = bot
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    photo = emulator.add_attachment("sunset.png", corpus.png(), "image/png")
    for field in ("url", "proxy_url"):  # another port on the CDN's host
        photo[field] = re.sub(r"//127\.0\.0\.1:\d+/", f"//127.0.0.1:{closed}/", photo[field])
    starter = await emulator.send_message(emulator.channel_id, USER, "warmer colours",
                                          mentions_bot=True, attachments=[photo])
    thread_id = starter["id"]
    await emulator.wait_for(lambda: any(m["content"].startswith("⚠️")
                                        for m in bot_messages(emulator, thread_id)))
    await settled(emulator, adapter)
    [error] = bot_messages(emulator, thread_id)
    # Same host, another port: not Discord's CDN (scheme, host and port must match).
    assert "`sunset.png` is not hosted on the platform's own file servers" in error["content"]
    assert messages.INTERNAL_ERROR not in error["content"]
    assert not stand_in.requests


async def test_a_gateway_that_failed_is_logged_at_stop(
        open_bot: Opener, emulator: DiscordEmulator, caplog: pytest.LogCaptureFixture) -> None:
    async with open_bot() as (_core, adapter):
        await emulator.close_gateway(4004, "Authentication failed.")
        await emulator.wait_for(lambda: adapter.bot.is_closed())
    assert any("gateway connection had failed" in r.getMessage() and "4004" in r.getMessage()
               for r in caplog.records)


async def test_a_thread_that_cannot_be_opened_nor_reported_is_logged(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,
        caplog: pytest.LogCaptureFixture) -> None:
    _core, adapter = bot
    # Both the thread and the message saying so are refused (Missing Permissions).
    emulator.queue_error("POST", f"/channels/{emulator.channel_id}/messages", status=403,
                         times=2)
    record = await emulator.slash_command("imagine", {"prompt": "a lantern"}, user_id=USER,
                                          channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original and record.original["attachments"]))
    await settled(emulator, adapter)
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("could not open a thread on the result: HTTP 403") for m in logged)
    assert any(m.startswith("could not say so either: HTTP 403") for m in logged)


async def test_a_reconnect_during_a_generation_loses_and_repeats_nothing(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator, stand_in: Any) -> None:
    _core, adapter = bot
    stand_in.faults.latency = 1.5
    record = await emulator.slash_command("imagine", {"prompt": "a slow painting"},
                                          user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: len(stand_in.generations) == 1)
    await emulator.send_reconnect()
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)

    assert (emulator.identifies, emulator.resumes) == (1, 1)
    assert len(stand_in.generations) == 1
    assert len(results(emulator, emulator.channel_id, record.original["id"])) == 1
    assert record.callbacks == [{"type": 5}]
    contents = [(c.json or {}).get("content") or "" for c in
                emulator.rest_calls("PATCH", f"/webhooks/{emulator.app_id}/{record.token}")]
    assert any(re.search(r"… [1-9] s · ", text) for text in contents), contents


async def test_a_rate_limit_is_waited_out(bot: tuple[Core, DiscordAdapter],
                                          emulator: DiscordEmulator) -> None:
    _core, adapter = bot
    message_id = emulator.ids.next()
    path = f"/channels/{message_id}/messages"
    emulator.queue_rate_limit("POST", path, retry_after=0.3)
    await emulator.send_message(emulator.channel_id, USER, "a quiet harbor", mentions_bot=True,
                                message_id=message_id)
    await emulator.wait_for(lambda: bool(results(emulator, message_id)))
    await settled(emulator, adapter)
    assert [c.status for c in emulator.rest_calls("POST", path)] == [429, 200]
    assert emulator.rate_limit_violations == 0
    assert len(bot_messages(emulator, message_id)) == 1


async def test_a_safety_block_is_shown(bot: tuple[Core, DiscordAdapter],
                                       emulator: DiscordEmulator, stand_in: Any) -> None:
    _core, adapter = bot
    stand_in.faults.queue_finish("IMAGE_SAFETY")
    record = await emulator.slash_command("imagine", {"prompt": "something risky"},
                                          user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original
                                         and record.original["content"].startswith("⚠️")))
    await settled(emulator, adapter)
    assert record.original is not None
    assert "image-safety" in record.original["content"]
    assert not record.original["attachments"] and not emulator.threads


async def test_command_errors_are_ephemeral(bot: tuple[Core, DiscordAdapter],
                                            emulator: DiscordEmulator, stand_in: Any) -> None:
    pdf = emulator.add_attachment("notes.pdf", corpus.PDF, "application/pdf")
    bad_file = await emulator.slash_command("imagine", {"prompt": "edit this"}, user_id=USER,
                                            channel_id=emulator.channel_id,
                                            attachments={"image1": pdf})
    bad_size = await emulator.slash_command(
        "imagine", {"prompt": "a tree", "model": "flash", "resolution": "4K"},
        user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bad_file.original is not None
                            and bad_size.original is not None)
    assert bad_file.ephemeral and bad_size.ephemeral
    assert bad_file.original is not None and "is not an image" in bad_file.original["content"]
    assert bad_size.original is not None and "fixed size" in bad_size.original["content"]
    assert not stand_in.generations and not emulator.threads


@pytest.mark.parametrize("emulator", [{"message_content_intent": False}], indirect=True)
async def test_without_message_content_the_thread_needs_mentions(
        open_bot: Opener, emulator: DiscordEmulator, stand_in: Any) -> None:
    async with open_bot(discord_guild_ids=(emulator.guild_id,)) as (_core, adapter):
        assert not emulator.identify_payloads[-1]["intents"] & Intent.MESSAGE_CONTENT
        assert emulator.global_commands == []
        assert {c["name"] for c in emulator.guild_commands[emulator.guild_id]} == {
            "imagine", "batch", "Edit with Gemini", "imagebot"}
        assert adapter.status()["message_content"] is False
        assert adapter.status()["ok"] is True

        starter = await emulator.send_message(emulator.channel_id, USER, "a paper boat",
                                              mentions_bot=True)
        thread_id = starter["id"]
        await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 1)
        await emulator.send_message(thread_id, USER, "unseen without a mention")
        await emulator.send_message(thread_id, USER, "make it red", mentions_bot=True)
        await emulator.wait_for(lambda: len(results(emulator, thread_id)) == 2)
        await settled(emulator, adapter)
        assert len(stand_in.generations) == 2
        assert prompt_of(stand_in.generations[-1].body) == "make it red"


async def test_serve_runs_the_adapter_when_a_token_is_set(
        make_settings: Any, emulator: DiscordEmulator, stand_in: Any) -> None:
    settings = make_settings(stand_in.base_url, discord_token=emulator.token,
                             discord_api_base=emulator.api_base,
                             discord_gateway_url=emulator.gateway_url)
    async with running(settings, host="127.0.0.1", port=0) as server:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["ok"]
        status = health["adapters"]["discord"]
        assert status["connected"] and status["message_content"]
        assert isinstance(status["latency"], float | None)
        assert emulator.identifies == 1 and emulator.global_commands


# --------------------------------------------------------------------------- sharding
# With DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS the bot runs discord.py's AutoShardedClient
# on its share of the shards and reports each shard in ``status`` (/healthz) and /metrics.


def owning_shard(emulator: DiscordEmulator, count: int) -> int:
    return (int(emulator.guild_id) >> 22) % count


async def test_a_worker_runs_its_shards_and_reports_each(open_bot: Any,
                                                         emulator: DiscordEmulator) -> None:
    shard = owning_shard(emulator, 2)
    async with open_bot(discord_shard_count=2, discord_shard_ids=(str(shard),)) as (_, adapter):
        assert emulator.identify_payloads[-1]["shard"] == [shard, 2]
        status = adapter.status()
        assert status["ok"] and list(status["shards"]) == [str(shard)]
        assert status["shards"][str(shard)]["connected"]

        record = await emulator.slash_command("imagine", {"prompt": "a cat in a hat"},
                                              user_id=USER, channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                             in emulator.threads))
        await settled(emulator, adapter)
        assert results(emulator, emulator.channel_id)

        registry = CollectorRegistry()
        registry.register(ShardCollector([adapter]))
        text = generate_latest(registry).decode()
        assert f'imagebot_discord_shard_up{{shard="{shard}"}} 1.0' in text
        assert f'imagebot_discord_shard_latency_seconds{{shard="{shard}"}}' in text


async def test_a_worker_whose_shards_carry_no_guild_still_starts(open_bot: Any,
                                                                emulator: DiscordEmulator
                                                                ) -> None:
    other = 1 - owning_shard(emulator, 2)
    async with open_bot(discord_shard_count=2, discord_shard_ids=(str(other),)) as (_, adapter):
        assert emulator.identify_payloads[-1]["shard"] == [other, 2]
        assert adapter.status()["shards"][str(other)]["connected"]
        assert list(adapter.bot.guilds) == []
