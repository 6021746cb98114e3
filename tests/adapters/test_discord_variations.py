"""Variations on Discord, end to end: ``/imagine … count:4`` posts a gallery of U1…U4 with a
Use button each; picking U3 makes the next message in the thread continue from U3."""

from __future__ import annotations

import base64
from typing import Any

from adapters.discord import DiscordAdapter
from bot.runtime import Core
from offline_gemini import OfflineGemini
from tests.adapters.test_discord import (  # noqa: F401  (the Discord harness's fixtures)
    OTHER,
    USER,
    bot,
    custom_ids,
    emulator,
    imagine,
    open_bot,
    settled,
)
from tests.emulators.discord import DiscordEmulator
from tests.wire import resolved


def model_images(content: dict[str, Any]) -> list[bytes]:
    return [base64.urlsafe_b64decode((p.get("inlineData") or p["inline_data"])["data"])
            for p in content["parts"]
            if ("inlineData" in p or "inline_data" in p) and not p.get("thought")]


async def test_ask_for_four_and_continue_from_the_third(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    core, adapter = bot
    head = await imagine(emulator, adapter, "a teapot shaped like a whale", count=4,
                         model="pro")
    generations = [r for r in stand_in.requests
                   if r.method in ("generateContent", "streamGenerateContent")]
    assert len(generations) == 4
    names = [a["filename"] for a in head["attachments"]]
    assert [name.split("-U")[1][0] for name in names] == ["1", "2", "3", "4"]
    assert head["content"].endswith("U1 · U2 · U3 · U4")
    assert "finished first, so the conversation continues from it" in head["content"]
    turn = custom_ids(head)[0].rsplit(":", 1)[1]
    assert custom_ids(head) == [f"imagebot:use{n}:{turn}" for n in (1, 2, 3, 4)] + [
        f"imagebot:reroll:{turn}", f"imagebot:4k:{turn}", f"imagebot:delete:{turn}",
        f"imagebot:drafts:{turn}"]  # Pro drew drafts while thinking: whoever asks sees them
    third = emulator.cdn_bytes(head["attachments"][2]["url"])

    thread_id = head["id"]
    use = await emulator.click_button(head, f"imagebot:use3:{turn}", user_id=OTHER,
                                      channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: use.original is not None)
    assert "Continuing from U3" in use.original["content"]
    await emulator.send_message(thread_id, USER, "now make it porcelain")
    await emulator.wait_for(lambda: len([r for r in stand_in.requests
                                         if r.method in ("generateContent", "streamGenerateContent")]) == 5)
    await settled(emulator, adapter)
    contents = resolved(stand_in.generations[-1].body, stand_in)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert model_images(contents[1]) == [third], "the history holds U3"
    assert len(await core.service.usage()) == 5
