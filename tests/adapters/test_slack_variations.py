"""Variations on Slack, end to end: ask for 4 candidates, get one upload of U1…U4 with a Use
button each, pick U3, and the next message in the thread continues from U3."""

from __future__ import annotations

import base64
from typing import Any

from offline_gemini import OfflineGemini
from tests.adapters.test_slack import (  # noqa: F401  (the Slack harness's fixtures)
    ALICE,
    BOB,
    CHANNEL,
    Bot,
    bot,
    bot_messages,
    buttons_of,
    finals,
    generations,
    mode,
    shown,
    slack,
    start_bot,
    twin_message_event,
)


def model_images(content: dict[str, Any]) -> list[bytes]:
    return [base64.urlsafe_b64decode((p.get("inlineData") or p["inline_data"])["data"])
            for p in content["parts"]
            if ("inlineData" in p or "inline_data" in p) and not p.get("thought")]


async def test_ask_for_four_and_continue_from_the_third(
        bot: Bot, stand_in: OfflineGemini) -> None:  # noqa: F811
    emu = bot.slack
    mention = emu.app_mention_event(CHANNEL, ALICE, "a teapot shaped like a whale --count 4")
    await bot.event(mention)
    await bot.event(twin_message_event(mention))
    [tail] = await bot.results(mention["ts"], 1)
    assert len(generations(stand_in)) == 4
    turn_id = buttons_of(tail)["imagebot_use_1"]
    assert set(buttons_of(tail)) == {"imagebot_use_1", "imagebot_use_2", "imagebot_use_3",
                                     "imagebot_use_4", "imagebot_reroll", "imagebot_4k",
                                     "imagebot_delete", "imagebot_drafts"}  # Pro's drafts
    uploads = [u for u in emu.uploads if u["thread_ts"] == mention["ts"]]
    assert [u["title"] for u in uploads] == ["U1", "U2", "U3", "U4"]
    assert len({u["message_ts"] for u in uploads}) == 1, "one upload of all four"
    assert len({u["bytes"] for u in uploads}) == 4
    head = bot_messages(emu, CHANNEL, mention["ts"])[0]
    assert "finished first, so the conversation continues from it" in shown(head)

    await bot.click("use_3", turn_id, user=BOB, message_ts=tail["ts"])
    await emu.wait_for(lambda: any("Continuing from U3" in (m.get("text") or "")
                                   for m in bot_messages(emu, CHANNEL, mention["ts"])))
    await bot.event(emu.message_event(CHANNEL, ALICE, "now make it porcelain",
                                      thread_ts=mention["ts"]))
    await bot.results(mention["ts"], 2)
    contents = generations(stand_in)[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert model_images(contents[1]) == [uploads[2]["bytes"]], "the history holds U3"
    usage = await bot.server.core.service.usage()
    assert len(usage) == 5, "four candidates and the follow-up, each a generation"
    assert finals(emu, CHANNEL, mention["ts"])
