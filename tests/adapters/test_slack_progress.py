"""Live progress in Slack, end to end: the real slack-bolt app (Socket Mode) against the
Slack emulator, with the offline stand-in streaming a Pro answer with gaps between chunks.

The status message shows the stage and the elapsed time (paced for ``chat.update``) and a
Cancel button; drafts show in the thread while the model thinks and go when the result
lands; the result's Drafts button shows them again, ephemerally, to whoever clicks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.slack import SlackAdapter
from bot import messages
from bot.model import ThreadKey
from offline_gemini import OfflineGemini
from tests.emulators.slack import SlackEmulator

TEAM, CHANNEL = "T0001", "C0STUDIO1"
ALICE, BOB, BOSS = "U0ALICE1", "U0BOB001", "U0BOSS01"
PACE = 0.5


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_user(BOB, "bob")
    emulator.add_user(BOSS, "boss", is_admin=True)
    emulator.add_channel(CHANNEL, "studio")
    yield emulator
    await emulator.stop()


@pytest.fixture
async def adapter(core_factory, slack: SlackEmulator,
                  stand_in: OfflineGemini) -> AsyncIterator[SlackAdapter]:
    stand_in.stream_gap = 0.6
    async with core_factory(slack_bot_token=slack.bot_token, slack_app_token=slack.app_token,
                            slack_api_url=slack.api_url) as core:
        running = SlackAdapter(core, pace=PACE)
        await running.start()
        await slack.wait_socket_connected()
        try:
            yield running
        finally:
            await running.stop()


def index_of(slack: SlackEmulator, predicate: Any) -> int:
    return next(i for i, call in enumerate(slack.calls) if predicate(call))


def status_updates(slack: SlackEmulator, ts: str) -> list[Any]:
    return [c for c in slack.calls if c.method == "chat.update" and c.params.get("ts") == ts]


def shown(message: dict[str, Any]) -> str:
    texts = [message.get("text") or ""]
    for block in message.get("blocks") or ():
        texts.append((block.get("text") or {}).get("text") or "")
        texts.extend(e.get("text") or "" for e in block.get("elements") or ()
                     if isinstance(e.get("text"), str))
    return "\n".join(texts)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in message.get("blocks") or ()
            if b["type"] == "actions" for e in b["elements"]}


def bot_messages(slack: SlackEmulator, root: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL, root) if m.get("bot_id") == slack.bot_id]


def message_at(slack: SlackEmulator, ts: str) -> dict[str, Any]:
    return next(m for m in slack.messages(CHANNEL) if m["ts"] == ts)


async def click(slack: SlackEmulator, message: dict[str, Any], action: str, user: str) -> None:
    payload = slack.block_actions_payload(
        user=user, channel=CHANNEL, message_ts=message["ts"], action_id=f"imagebot_{action}",
        value=buttons(message)[f"imagebot_{action}"])
    await slack.socket_send("interactive", payload)


async def settle(slack: SlackEmulator, adapter: SlackAdapter) -> None:
    await slack.wait_for(lambda: adapter.status()["tasks"] == 0)


async def test_the_thread_shows_drafts_and_elapsed_time_before_the_result(
        adapter: SlackAdapter, slack: SlackEmulator) -> None:
    mention = slack.app_mention_event(CHANNEL, ALICE, "a lighthouse in a storm --ar 16:9")
    await slack.socket_send("events_api", slack.event_envelope(mention))
    await slack.wait_for(lambda: any(buttons(m).get("imagebot_reroll")
                                     for m in bot_messages(slack, mention["ts"])))
    await settle(slack, adapter)

    head = bot_messages(slack, mention["ts"])[0]
    updates = status_updates(slack, head["ts"])
    progress, result = updates[:-1], updates[-1]
    assert "⏳" not in str(result.params["text"]), "the last update is the result itself"
    texts = [str(u.params["text"]) for u in progress]
    assert any(re.search(r"Thinking… \d+ s", t) for t in texts), texts
    assert any(re.search(r"Drawing… \d+ s · 1 draft · Nano Banana Pro", t)
               for t in texts), texts
    blocks = [b for u in progress for b in u.params["blocks"]]
    assert any("💭 Composing the offline preview" in str(b) for b in blocks)
    assert any("imagebot_cancel" in str(b) for b in blocks), "Cancel on the status"
    # Paced: progress updates of one message at least PACE apart.
    gaps = [b.time - a.time for a, b in zip(progress, progress[1:], strict=False)]
    assert all(gap >= PACE - 0.05 for gap in gaps), gaps

    # Both drafts were posted in the thread before the result, and went when it landed.
    draft_at = index_of(slack, lambda c: c.method == "files.getUploadURLExternal"
                        and str(c.params.get("filename")).startswith("imagebot-draft-1"))
    result_at = slack.calls.index(result)
    assert draft_at < result_at
    elapsed_at = index_of(slack, lambda c: c in progress and re.search(
        r"… [1-9]\d* s", str(c.params["text"])))
    assert elapsed_at < result_at
    drafts = [u for u in slack.uploads if u["filename"].startswith("imagebot-draft-")]
    assert [u["initial_comment"] for u in drafts] == [messages.draft_caption(1),
                                                      messages.draft_caption(2)]
    assert sorted(slack.deleted_files) == sorted(u["file_id"] for u in drafts)
    assert not any("draft" in shown(m).lower() for m in bot_messages(slack, mention["ts"]))


async def test_drafts_show_privately_to_whoever_clicks(
        adapter: SlackAdapter, slack: SlackEmulator) -> None:
    mention = slack.app_mention_event(CHANNEL, ALICE, "a harbour at dusk")
    await slack.socket_send("events_api", slack.event_envelope(mention))
    await slack.wait_for(lambda: any(buttons(m).get("imagebot_drafts")
                                     for m in bot_messages(slack, mention["ts"])))
    await settle(slack, adapter)
    [tail] = [m for m in bot_messages(slack, mention["ts"]) if buttons(m)]
    await click(slack, tail, "drafts", BOB)
    await slack.wait_for(lambda: len(slack.ephemerals) == 1)
    [shown_to_bob] = slack.ephemerals
    assert shown_to_bob["user"] == BOB and shown_to_bob["source"] == "response_url"
    images = [b for b in shown_to_bob["blocks"] if b["type"] == "image"]
    assert [b["alt_text"] for b in images] == ["Draft 1", "Draft 2"]
    file_ids = [b["slack_file"]["id"] for b in images]
    for file_id in file_ids:
        assert slack.files[file_id]["channels"] == [], "uploaded unshared"
        assert slack.files[file_id]["title"].startswith("Draft")

    await click(slack, tail, "drafts", ALICE)  # a second click reuses the same files
    await slack.wait_for(lambda: len(slack.ephemerals) == 2)
    again = [b["slack_file"]["id"] for b in slack.ephemerals[1]["blocks"] if b["type"] == "image"]
    assert again == file_ids and slack.ephemerals[1]["user"] == ALICE
    await click(slack, tail, "delete", ALICE)
    await slack.wait_for(lambda: all(f in slack.deleted_files for f in file_ids))


async def test_cancel_mid_stream_by_the_requester_or_an_admin_only(
        adapter: SlackAdapter, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    stand_in.stream_gap = 0
    first = slack.app_mention_event(CHANNEL, ALICE, "a windmill")
    await slack.socket_send("events_api", slack.event_envelope(first))
    await slack.wait_for(lambda: any(buttons(m) for m in bot_messages(slack, first["ts"])))
    await settle(slack, adapter)
    key = ThreadKey("slack", TEAM, CHANNEL, first["ts"])
    service = adapter.service
    before = await service.history(key)

    stand_in.stream_gap = 0.6
    follow = slack.message_event(CHANNEL, ALICE, "make it red", thread_ts=first["ts"])
    await slack.socket_send("events_api", slack.event_envelope(follow))
    await slack.wait_for(lambda: any(u["filename"].startswith("imagebot-draft-1")
                                     and u["message_ts"] > follow["ts"] for u in slack.uploads))
    status = next(m for m in bot_messages(slack, first["ts"])
                  if "imagebot_cancel" in buttons(m))
    await click(slack, status, "cancel", BOB)
    await slack.wait_for(lambda: len(slack.ephemerals) == 1)
    assert slack.ephemerals[0]["text"] == messages.CANCEL_NOT_YOURS
    assert slack.ephemerals[0]["user"] == BOB
    await click(slack, status, "cancel", BOSS)  # a workspace admin may
    await slack.wait_for(lambda: "Cancelled by boss" in shown(message_at(slack, status["ts"])))
    await settle(slack, adapter)
    assert [t.id for t in await service.history(key)] == [t.id for t in before]
    assert not any(u["filename"].startswith("imagebot-draft-") and u["file_id"] in slack.files
                   for u in slack.uploads), "the drafts went with the cancelled turn"
    await click(slack, status, "cancel", ALICE)
    await slack.wait_for(lambda: len(slack.ephemerals) == 2)
    assert slack.ephemerals[1]["text"] == messages.CANCEL_GONE

    stand_in.stream_gap = 0
    again = slack.message_event(CHANNEL, ALICE, "make it blue", thread_ts=first["ts"])
    await slack.socket_send("events_api", slack.event_envelope(again))
    await slack.wait_for(lambda: len([m for m in bot_messages(slack, first["ts"])
                                      if buttons(m).get("imagebot_reroll")]) == 2)
    await settle(slack, adapter)
    assert len(await service.history(key)) == 2, "the thread carries on, signatures intact"
