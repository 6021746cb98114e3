"""Slack uploads at real sizes: the real slack-sdk ``files_upload_v2`` (one
files.getUploadURLExternal per file, the bytes POSTed to each upload URL, one
files.completeUploadExternal for them all) against the Slack emulator, with the stand-in
answering real-size images (Pro 4K: a JPEG of about 7.8 MB).

Real sizes are megabytes: these few tests are the only ones that upload them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.images import sha256
from offline_gemini import OfflineGemini
from tests.adapters.test_slack import (  # noqa: F401  (the Slack harness's fixtures)
    ALICE,
    CHANNEL,
    Bot,
    bot,
    bot_messages,
    shown,
    slack,
    start_bot,
)
from tests.conftest import TEST_KEY
from tests.emulators.slack import SlackEmulator

MIB = 2**20
MB = 1_000_000


def results(emu: SlackEmulator, thread_ts: str) -> list[dict[str, Any]]:
    """The result images uploaded into a thread (not the drafts shown while drawing)."""
    return [u for u in emu.uploads
            if u["thread_ts"] == thread_ts and not u["title"].startswith("Draft")]


@pytest.fixture
def mode() -> str:
    """One delivery mode is enough here: the uploads are the same in both."""
    return "socket"


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


async def test_four_4k_images_go_up_in_one_thread_reply(bot: Bot) -> None:  # noqa: F811
    emu = bot.slack
    mention = emu.app_mention_event(CHANNEL, ALICE,
                                    "four harbours at dawn --model pro --size 4K --count 4")
    await bot.event(mention)
    await bot.results(mention["ts"], 1)

    uploads = results(emu, mention["ts"])
    assert [u["title"] for u in uploads] == ["U1", "U2", "U3", "U4"]
    sizes = [len(u["bytes"]) for u in uploads]
    assert all(6 * MB < s < 10 * MB for s in sizes), sizes
    assert sum(sizes) > 25 * MIB, "more than Discord takes in one message"
    asked = [c for c in emu.calls_to("files.getUploadURLExternal")
             if "draft" not in c.params["filename"]]
    assert [int(c.params["length"]) for c in asked] == sizes, "each length declared exactly"
    [complete] = [c for c in emu.calls_to("files.completeUploadExternal")
                  if "Draft" not in str(c.params["files"])]
    files = complete.params["files"]
    assert len(json.loads(files) if isinstance(files, str) else files) == 4
    assert len({u["message_ts"] for u in uploads}) == 1, "one message carries all four"
    service = bot.server.core.service
    for upload in uploads:
        assert upload["filename"].endswith(".jpeg") or upload["filename"].endswith(".jpg")
        assert await service.image(sha256(upload["bytes"])) == upload["bytes"], "originals"
    [message] = [m for m in bot_messages(emu, CHANNEL, mention["ts"]) if m.get("files")]
    assert [f["size"] for f in message["files"]] == sizes


async def test_a_team_limit_under_a_4k_image_is_reported(bot: Bot) -> None:  # noqa: F811
    """A workspace that restricts large uploads: the thread says why the image is missing."""
    emu = bot.slack
    emu.upload_size_limit = 5 * MB
    mention = emu.app_mention_event(CHANNEL, ALICE, "a harbour at dawn --model pro --size 4K")
    await bot.event(mention)
    finals = await bot.results(mention["ts"], 1)
    assert not results(emu, mention["ts"])
    said = "\n".join(shown(m) for m in bot_messages(emu, CHANNEL, mention["ts"]))
    assert "Slack did not accept the upload of the image" in said
    assert "file_upload_size_restricted" in said
    assert any(m.get("blocks") for m in finals), "the result's buttons still come"
