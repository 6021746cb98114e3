"""Batch jobs on Discord, end to end: ``/batch`` in a text channel (a thread opens on the
answer), ``/batch`` with a prompt file and a reference in a thread, the Cancel button, and
the results the poller posts (a real discord.py client against the Discord emulator)."""

from __future__ import annotations

from typing import Any

from adapters.batch_poller import BatchPoller
from adapters.discord import DiscordAdapter
from bot.runtime import Core
from offline_gemini import OfflineGemini
from offline_gemini.faults import Fault
from tests import corpus
from tests.adapters.test_discord import (  # noqa: F401  (the Discord harness's fixtures)
    OTHER,
    USER,
    bot,
    bot_messages,
    emulator,
    open_bot,
    settled,
)
from tests.emulators.discord import DiscordEmulator

JSON = dict[str, Any]


def creates(stand_in: OfflineGemini) -> list[Any]:
    return [r for r in stand_in.requests if r.path.endswith(":batchGenerateContent")]


def cancel_ids(message: JSON) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or ()
            for c in row["components"] if c["custom_id"].startswith("imagebot:batch-cancel:")]


async def deliver(core: Core, adapter: DiscordAdapter) -> None:
    """What serve's poller does once the jobs are due: poll, then post."""
    for job in await core.service.batches.jobs():
        await core.service.batches.refresh(job.id)
    await BatchPoller(core.service, {"discord": adapter.batch_poster}, interval=0.05).run_once()


async def test_batch_in_a_channel_opens_a_thread_with_every_result(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    core, adapter = bot
    stand_in.batches.faults_by_key["3"] = Fault("block", reason="SAFETY")
    record = await emulator.slash_command(
        "batch", {"prompts": "--ar 16:9 | a red fox | a snow owl | a grey wolf",
                  "model": "flash"}, user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)
    assert "Batch of 3 prompts" in record.original["content"]
    thread_id = record.original["id"]
    [notice] = bot_messages(emulator, thread_id)
    assert "3 prompts on Nano Banana" in notice["content"] and cancel_ids(notice)
    [create] = creates(stand_in)
    sent = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["request"]["contents"][0]["parts"][0]["text"] for r in sent] == [
        "a red fox", "a snow owl", "a grey wolf"]

    [job] = await core.service.batches.jobs()
    stand_in.clock.advance(minutes=11)
    await deliver(core, adapter)
    posted = bot_messages(emulator, thread_id)[1:]
    images, failures, summary = posted
    assert [a["filename"][:18] for a in images["attachments"]] == [
        f"batch-{job.short}-001", f"batch-{job.short}-002"]
    assert images["content"] == "**1.** a red fox\n**2.** a snow owl"
    assert "🚫 **3.** a grey wolf — Gemini blocked the prompt" in failures["content"]
    assert "3 prompts on Nano Banana: 2 done, 0 failed, 1 blocked · 2 images" in summary["content"]
    await deliver(core, adapter)
    assert len(bot_messages(emulator, thread_id)) == 4, "posted once"


async def test_batch_file_in_a_thread_cancel_and_refusals(
        bot: tuple[Core, DiscordAdapter], emulator: DiscordEmulator,  # noqa: F811
        stand_in: OfflineGemini) -> None:
    core, adapter = bot
    refused = await emulator.slash_command(
        "batch", {"prompts": "a | b --model pro", "model": "flash"}, user_id=USER,
        channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: refused.original is not None)
    assert refused.ephemeral and "runs on one model" in refused.original["content"]
    assert not creates(stand_in)

    first = await emulator.slash_command("batch", {"prompts": "a cat", "model": "flash"},
                                         user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: bool(first.original and first.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)
    thread_id = first.original["id"]
    prompts = emulator.add_attachment("labels.txt", b"--model flash\nlabel one\nlabel two\n",
                                      "text/plain", channel_id=thread_id)
    logo = emulator.add_attachment("logo.png", corpus.png(60, 40), "image/png",
                                   channel_id=thread_id)
    second = await emulator.slash_command("batch", {}, user_id=USER, channel_id=thread_id,
                                          attachments={"file": prompts, "image1": logo})
    await emulator.wait_for(lambda: len(creates(stand_in)) == 2)
    await settled(emulator, adapter)
    assert "Batch of 2 prompts" in second.original["content"]
    sent = creates(stand_in)[-1].body["batch"]["inputConfig"]["requests"]["requests"]
    assert [len(r["request"]["contents"][0]["parts"]) for r in sent] == [2, 2]
    notice = next(m for m in reversed(bot_messages(emulator, thread_id)) if cancel_ids(m))
    job_id = cancel_ids(notice)[0].rsplit(":", 1)[1]
    assert (await core.service.batches.job(job_id)).key.thread == thread_id

    nope = await emulator.click_button(notice, cancel_ids(notice)[0], user_id=OTHER,
                                       channel_id=thread_id)
    await emulator.wait_for(lambda: nope.original is not None)
    assert "Only the person who submitted" in nope.original["content"]
    await emulator.click_button(notice, cancel_ids(notice)[0], user_id=USER,
                                channel_id=thread_id)
    await emulator.wait_for(lambda: any("cancelled by" in (m["content"] or "")
                                        for m in bot_messages(emulator, thread_id)))
    await settled(emulator, adapter)
    await deliver(core, adapter)
    summary = bot_messages(emulator, thread_id)[-1]["content"]
    assert "was cancelled: 2 prompts on Nano Banana: 0 done, 0 failed, 0 blocked, 2 not run" in (
        summary)
