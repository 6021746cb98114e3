"""Discord uploads at real sizes: the real discord.py client against the Discord emulator,
which refuses what Discord refuses (a file over the guild's 10 MiB per-file limit, a message
request over 25 MiB, more than 10 files), with the stand-in answering real-size images
(Pro 4K: a JPEG of about 7.8 MB).

Real sizes are megabytes: these few tests are the only ones that post them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from PIL import Image

from adapters.discord import DiscordAdapter, render
from adapters.discord.reporter import StatusMessage, TurnReporter
from bot.batch import BatchJobView, BatchLineView
from bot.images import image_info, sha256
from bot.model import Author, ImageRef, Reply, ReplyImage, ReplyPart, Usage
from bot.options import PRO
from bot.runtime import Core
from offline_gemini import OfflineGemini
from tests.adapters.test_discord import (  # noqa: F401  (the Discord harness's fixtures)
    USER,
    bot,
    bot_messages,
    emulator,
    imagine,
    key_for,
    open_bot,
    settled,
)
from tests.conftest import TEST_KEY
from tests.emulators.discord import DiscordEmulator

MIB = 2**20
MB = 1_000_000


@pytest.fixture
async def stand_in() -> AsyncIterator[OfflineGemini]:
    """The stand-in at real sizes (it replaces the small-image one for these tests)."""
    server = OfflineGemini(api_key=TEST_KEY, strict_signatures=True, real_sizes=True,
                           keep_requests=50)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def upload_calls(emulator: DiscordEmulator) -> list[Any]:  # noqa: F811
    return [c for c in emulator.requests if c.files]


def attachment_bytes(emulator: DiscordEmulator,  # noqa: F811
                     messages: list[dict[str, Any]]) -> list[bytes]:
    return [emulator.cdn_bytes(a["url"]) for m in messages for a in m["attachments"]]


# --------------------------------------------------------------------------- unit: batching


def upload(size: int, name: str = "a.jpg") -> render.Upload:
    return render.Upload(name, b"\0" * size, "image/jpeg")


def test_files_are_grouped_under_the_message_request_limit() -> None:
    four_k = [upload(int(7.8 * MB), f"{i}.jpg") for i in range(4)]
    batches = render.message_batches(four_k, 10 * MIB)
    assert [len(b) for b in batches] == [3, 1], "four 4K JPEGs are 31 MB: 3 + 1"
    assert [u.filename for b in batches for u in b] == [f"{i}.jpg" for i in range(4)]
    small = [upload(1000) for _ in range(23)]
    assert [len(b) for b in render.message_batches(small, 10 * MIB)] == [10, 10, 3]
    # In a boosted guild a message takes as much as its largest file.
    assert [len(b) for b in render.message_batches([upload(45 * MIB), upload(6 * MIB)],
                                                   50 * MIB)] == [1, 1]
    assert render.message_batches([], 10 * MIB) == []


# --------------------------------------------------------------------------- end to end


async def test_a_pro_4k_answer_and_a_4k_variation_set_arrive_whole(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    """One 7.8 MB JPEG passes as it is; four of them (31 MB) go in two messages, 3 + 1."""
    core, adapter = bot
    head = await imagine(emulator, adapter, "a harbour at dawn", model="pro", resolution="4K")
    [single] = head["attachments"]
    answer = emulator.cdn_bytes(single["url"])
    assert single["content_type"] == "image/jpeg" and 6 * MB < single["size"] <= 10 * MIB
    assert await core.service.image(sha256(answer)) == answer, "the model's own bytes"
    assert "upload limit" not in head["content"], "the original bytes, no note"

    gallery = await imagine(emulator, adapter, "four harbours at dawn", model="pro",
                            resolution="4K", count=4)
    thread = gallery["id"]
    follow = [m for m in bot_messages(emulator, thread) if m["attachments"]]
    messages = [gallery, *follow]
    names = [a["filename"] for m in messages for a in m["attachments"]]
    assert [n.split("-U")[1][0] for n in names] == ["1", "2", "3", "4"]
    assert [len(m["attachments"]) for m in messages] == [3, 1]
    sizes = [a["size"] for m in messages for a in m["attachments"]]
    assert all(6 * MB < s <= 10 * MIB for s in sizes), sizes
    for posted in attachment_bytes(emulator, messages):
        assert await core.service.image(sha256(posted)) == posted, "originals, not re-encoded"
    assert sum(sizes) > 25 * MIB, "one message could not have carried them"
    assert all(a["content_type"] == "image/jpeg" for m in messages for a in m["attachments"])
    assert gallery["content"].endswith("U1 · U2 · U3 · U4")
    assert "did not accept" not in " ".join(m["content"] for m in messages)
    assert not [c for c in upload_calls(emulator) if c.status != 200], "nothing refused"
    assert all(c.body_size <= 25 * MIB for c in upload_calls(emulator))


async def test_a_reply_with_several_4k_images_and_one_over_the_file_limit(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    """Four real 4K JPEGs and a 4K PNG of more than 10 MiB in one reply: every JPEG arrives
    byte for byte (split across messages), only the PNG is re-encoded, and the reply says so."""
    _core, adapter = bot
    head = await imagine(emulator, adapter, "a lighthouse", model="pro", resolution="4K")
    jpeg = emulator.cdn_bytes(head["attachments"][0]["url"])
    assert 6 * MB < len(jpeg) <= 10 * MIB
    with Image.open(io.BytesIO(jpeg)) as frame:
        buffer = io.BytesIO()
        frame.save(buffer, "PNG")
    png = buffer.getvalue()
    assert len(png) > 10 * MIB, len(png)

    channel = adapter.bot.get_channel(int(emulator.channel_id))
    assert isinstance(channel, discord.TextChannel)
    images = [jpeg, jpeg, jpeg, jpeg, png]
    parts = (ReplyPart(kind="text", text="Five views of the lighthouse."),
             *(ReplyPart(kind="image", image=_reply_image(data)) for data in images))
    reply = Reply(turn_id="e" * 32, thread=key_for(emulator, emulator.channel_id),
                  parts=parts, model=PRO, elapsed=1.0, usage=Usage(total_tokens=1))
    before = len(bot_messages(emulator, emulator.channel_id))
    reporter = TurnReporter(StatusMessage(channel), channel,
                            upload_limit=channel.guild.filesize_limit, tick=0.2)
    refs = await reporter.finished(reply)

    posted = bot_messages(emulator, emulator.channel_id)[before:]
    assert len(refs["messages"]) == len(posted) == 2
    assert [len(m["attachments"]) for m in posted] == [3, 2]
    got = attachment_bytes(emulator, posted)
    assert got[:4] == [jpeg] * 4, "the JPEGs are the original bytes"
    reencoded = got[4]
    assert reencoded[:3] == b"\xff\xd8\xff" and len(reencoded) <= 10 * MIB < len(png)
    first = posted[0]["content"]
    assert first.startswith("ℹ️ Image 5 is")
    assert "posted as a high-quality JPEG" in first and "the original stays" in first
    assert "Five views of the lighthouse." in first
    assert posted[-1]["embeds"] and posted[-1]["components"], "the last message closes it"
    assert all(c.status == 200 for c in upload_calls(emulator))
    await settled(emulator, adapter)


def _reply_image(data: bytes) -> ReplyImage:
    mime_type, width, height = image_info(data)
    return ReplyImage(data, mime_type, width, height, sha256(data))


async def test_batch_results_at_4k_are_posted_in_messages_discord_takes(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    """Five finished batch lines with a 4K JPEG each (39 MB): 3 + 2 files, not one message."""
    _core, adapter = bot
    head = await imagine(emulator, adapter, "a lighthouse", model="pro", resolution="4K")
    [attachment] = head["attachments"]
    jpeg = emulator.cdn_bytes(attachment["url"])
    image = ImageRef(sha256(jpeg), "image/jpeg", 5504, 3072)
    key = key_for(emulator, emulator.channel_id)
    job = BatchJobView(id="b" * 32, display_name="lighthouses", name="batches/1", key=key,
                       author=Author(USER, "Alice"), model=PRO, options={},
                       state="succeeded", error="", total=6, counts={}, images=5, cost=None,
                       created_at=0.0, updated_at=0.0)
    lines = [BatchLineView(number=n, prompt=f"lighthouse {n}", status="succeeded",
                           images=(image,)) for n in range(1, 6)]
    lines.append(BatchLineView(number=6, prompt="a blocked one", status="blocked",
                               error="refused"))
    before = len(bot_messages(emulator, emulator.channel_id))
    await adapter.batch_poster.post_results(job, lines)

    posted = bot_messages(emulator, emulator.channel_id)[before:]
    assert [len(m["attachments"]) for m in posted] == [3, 2, 0]
    assert attachment_bytes(emulator, posted) == [jpeg] * 5
    assert posted[0]["content"].splitlines() == [f"**{n}.** lighthouse {n}" for n in (1, 2, 3)]
    assert posted[2]["content"].startswith("🚫 **6.** a blocked one")
    assert all(c.status == 200 for c in upload_calls(emulator))
