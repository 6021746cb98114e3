"""Batch jobs on Slack, end to end: ``/imagine --batch``, a mention with ``--batch`` and an
attached prompt file plus a reference image, the Cancel button, and the results posted by
``serve``'s poller (the real slack-bolt app against the Slack emulator)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapters.slack.batch import CANCEL_ACTION
from offline_gemini import OfflineGemini
from offline_gemini.faults import Fault
from tests.adapters.test_slack import (  # noqa: F401  (the Slack harness's fixtures)
    ALICE,
    BOB,
    CHANNEL,
    Bot,
    bot_messages,
    image_file,
    mode,
    shown,
    slack,
    start_bot,
)
from tests.emulators.slack import SlackEmulator


@pytest.fixture
async def bot(start_bot) -> Any:  # noqa: F811
    async with start_bot(batch_poll_seconds=0.05) as running_bot:
        yield running_bot


def creates(stand_in: OfflineGemini) -> list[Any]:
    return [r for r in stand_in.requests if r.path.endswith(":batchGenerateContent")]


def cancel_value(message: dict[str, Any]) -> str | None:
    for block in message.get("blocks") or ():
        for element in block.get("elements") or ():
            if element.get("action_id") == CANCEL_ACTION:
                return str(element["value"])
    return None


async def submitted(emu: SlackEmulator, root_ts: str) -> dict[str, Any]:
    await emu.wait_for(lambda: any(cancel_value(m) for m in bot_messages(
        emu, CHANNEL, root_ts)))
    return next(m for m in bot_messages(emu, CHANNEL, root_ts) if cancel_value(m))


def is_summary(message: dict[str, Any]) -> bool:
    return re.match(r"^Batch \w+ (finished|failed|was cancelled|expired)",
                    message.get("text") or "") is not None


async def summary(emu: SlackEmulator, root_ts: str) -> str:
    await emu.wait_for(lambda: any(is_summary(m) for m in bot_messages(
        emu, CHANNEL, root_ts)), timeout=20)
    return next(m["text"] for m in bot_messages(emu, CHANNEL, root_ts) if is_summary(m))


async def test_imagine_batch_posts_every_result_in_its_thread(
        bot: Bot, stand_in: OfflineGemini) -> None:
    emu = bot.slack
    stand_in.batches.faults_by_key["2"] = Fault("finish", reason="IMAGE_SAFETY")
    ack = await bot.command("--batch --model flash --ar 4:3\na red kite\na green kite\n"
                            "a blue kite --ar 1:1")
    assert ack == ""
    await emu.wait_for(lambda: bool(emu.messages(CHANNEL)))
    root = emu.messages(CHANNEL)[0]
    assert "submitted a batch of 3 prompts" in shown(root)
    notice = await submitted(emu, root["ts"])
    assert "Batch" in shown(notice) and "3 prompts on Nano Banana" in shown(notice)
    [create] = creates(stand_in)
    sent = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["request"]["generationConfig"]["imageConfig"]["aspectRatio"] for r in sent] == [
        "4:3", "4:3", "1:1"]

    stand_in.clock.advance(minutes=11)
    text = await summary(emu, root["ts"])
    assert "3 prompts on Nano Banana: 2 done, 0 failed, 1 blocked · 2 images" in text
    uploads = [u for u in emu.uploads if u["thread_ts"] == root["ts"]]
    assert [u["title"] for u in uploads] == ["1. a red kite", "3. a blue kite"]
    assert "*1.* a red kite" in uploads[0]["initial_comment"]
    failures = [m for m in bot_messages(emu, CHANNEL, root["ts"]) if "🚫" in (m.get("text") or "")]
    assert "*2.* a green kite — Gemini generated an image but withheld it" in failures[0]["text"]


async def test_a_mention_with_a_prompt_file_and_a_reference(
        bot: Bot, stand_in: OfflineGemini) -> None:
    emu = bot.slack
    prompts = emu.add_file(name="brief.csv", mimetype="text/csv", user=ALICE,
                             content=b"prompt,ar\nthe logo on a mug,1:1\nthe logo on a cap,4:3\n")
    logo = image_file(emu, "logo.png", (80, 60))
    mention = emu.app_mention_event(CHANNEL, ALICE, "--batch --model flash",
                                      files=[prompts, logo])
    await bot.event(mention)
    await submitted(emu, mention["ts"])
    [create] = creates(stand_in)
    sent = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["request"]["contents"][0]["parts"][0]["text"] for r in sent] == [
        "the logo on a mug", "the logo on a cap"]
    assert all(len(r["request"]["contents"][0]["parts"]) == 2 for r in sent), "the logo goes"
    stand_in.clock.advance(minutes=11)
    text = await summary(emu, mention["ts"])
    assert "2 done, 0 failed, 0 blocked · 2 images" in text


async def test_cancel_button_and_refusals(bot: Bot, stand_in: OfflineGemini) -> None:
    emu = bot.slack
    assert "Usage" in await bot.command("--batch")
    await bot.command("--batch --model flash\na\nb --model pro")
    await emu.wait_for(lambda: bool(emu.ephemerals))
    assert "runs on one model" in emu.ephemerals[-1]["text"]
    assert not emu.messages(CHANNEL) and not creates(stand_in)

    await bot.command("--batch --model flash\na lamp\na chair")
    await emu.wait_for(lambda: bool(emu.messages(CHANNEL)))
    root = emu.messages(CHANNEL)[0]
    notice = await submitted(emu, root["ts"])
    job_id = cancel_value(notice)
    assert job_id
    await bot.click_action(CANCEL_ACTION, job_id, user=BOB, message_ts=notice["ts"])
    await emu.wait_for(lambda: len(emu.ephemerals) == 2)
    assert "Only the person who submitted" in emu.ephemerals[-1]["text"]
    await bot.click_action(CANCEL_ACTION, job_id, user=ALICE, message_ts=notice["ts"])
    text = await summary(emu, root["ts"])
    assert "was cancelled: 2 prompts on Nano Banana: 0 done, 0 failed, 0 blocked, 2 not run" in text
    assert any("cancelled by" in (m.get("text") or "")
               for m in bot_messages(emu, CHANNEL, root["ts"]))
