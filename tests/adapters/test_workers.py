"""Two ``imagebot serve`` processes on one PostgreSQL database, in Slack HTTP mode.

Slack events and their retries for the same threads alternate between the workers: each
turn runs once, in delivery order, and the next turn carries valid thought signatures (the
stand-in checks them strictly). A worker killed mid-turn leaves the thread's history as it
was, and the other worker takes the turn over once its lease ends: the turn runs there,
in its place in the thread's line, and is posted in the thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.resume import RESUMED
from bot.model import ThreadKey
from bot.runtime import open_store
from offline_gemini import OfflineGemini
from tests.conftest import TEST_KEY
from tests.emulators.slack import SlackEmulator
from tests.workers import SlackDelivery, stop_worker, workers

pytestmark = pytest.mark.timeout(180)

CHANNEL = "C0STUDIO1"
ALICE = "U0ALICE1"
LEASE = 3.0


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_channel(CHANNEL, "studio")
    yield emulator
    await emulator.stop()


def worker_env(stand_in: OfflineGemini, slack: SlackEmulator, database_url: str
               ) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GEMINI_BASE_URL": stand_in.base_url,
            "GEMINI_RETRY_ATTEMPTS": "1", "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_API_URL": slack.api_url, "IMAGEBOT_LEASE_SECONDS": str(LEASE)}


async def prompts_of(database_url: str, key: ThreadKey) -> list[str]:
    store = await open_store(database_url)
    try:
        return [t.prompt for t in await store.list_turns(key)]
    finally:
        await store.close()


async def wait_turns(database_url: str, key: ThreadKey, count: int, timeout: float  # noqa: ASYNC109
                     ) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        prompts = await prompts_of(database_url, key)
        if len(prompts) >= count or time.monotonic() > deadline:
            return prompts
        await asyncio.sleep(0.1)


def results(slack: SlackEmulator, key: ThreadKey) -> list[dict]:
    """The thread's result uploads (not the drafts a thinking model shows meanwhile)."""
    return [m for m in slack.messages(CHANNEL, key.thread)
            if any(not str(f.get("name")).startswith("imagebot-draft-")
                   for f in m.get("files") or ())]


async def test_events_and_retries_alternate_between_two_workers(
        stand_in: OfflineGemini, slack: SlackEmulator, postgres_url: str, tmp_path: Path):
    stand_in.faults.latency = 0.3
    async with workers(2, worker_env(stand_in, slack, postgres_url), tmp_path) as pool:
        delivery = SlackDelivery(slack, pool)
        keys, expected = [], []
        for n in range(2):
            root = slack.app_mention_event(CHANNEL, ALICE, f"thread {n}: a lighthouse")
            keys.append(ThreadKey("slack", slack.team_id, CHANNEL, root["ts"]))
            expected.append([f"thread {n}: a lighthouse"])
            await delivery.deliver(root)
        for step in range(3):
            for n, key in enumerate(keys):
                prompt = f"thread {n}: change {step}"
                expected[n].append(prompt)
                await delivery.deliver(slack.message_event(CHANNEL, ALICE, prompt,
                                                           thread_ts=key.thread))
        for key, prompts in zip(keys, expected, strict=True):
            assert await wait_turns(postgres_url, key, len(prompts), 60) == prompts
        generated = [r for r in stand_in.requests if r.body and "contents" in r.body]
        assert len(generated) == 8, "one generation per event, retries dropped"
        # Each follow-up sent the thread so far back, signatures included (checked strictly).
        assert all(len(r.body["contents"]) % 2 == 1 for r in generated)
        logs = [w.log_text() for w in pool]
        assert all("dropped a duplicate delivery" in text for text in logs)
        for key in keys:
            await slack.wait_for(lambda k=key: len(results(slack, k)) >= 4, timeout=30)
            assert len(results(slack, key)) == 4, "every turn posted its result once"


async def test_a_worker_killed_mid_turn_loses_nothing(
        stand_in: OfflineGemini, slack: SlackEmulator, postgres_url: str, tmp_path: Path):
    """The other worker takes the dead worker's turn over once its lease ends, runs it in
    its place in the thread's line and posts it in the thread; the next turn follows."""
    async with workers(2, worker_env(stand_in, slack, postgres_url), tmp_path) as pool:
        delivery = SlackDelivery(slack, pool)
        root = slack.app_mention_event(CHANNEL, ALICE, "a lighthouse")
        key = ThreadKey("slack", slack.team_id, CHANNEL, root["ts"])
        await delivery.deliver(root)
        assert await wait_turns(postgres_url, key, 1, 30) == ["a lighthouse"]

        stand_in.faults.latency = 30.0  # the doomed turn is still at Gemini when killed
        asked = len(stand_in.generations)
        doomed = slack.message_event(CHANNEL, ALICE, "doomed", thread_ts=key.thread)
        await delivery.deliver(doomed, retry=False)
        await slack.wait_for(lambda: len(stand_in.generations) > asked, timeout=20)
        pool[1].kill()
        await pool[1].process.wait()
        stand_in.faults.latency = 0.0

        # Slack's retry of the doomed message reaches the survivor: the shared dedupe
        # drops it, so only the takeover can save the turn.
        status, _ = await slack.send_http_event(
            pool[0].events_url, slack.event_envelope(doomed), retry_num=1,
            retry_reason="http_timeout")
        assert status == 200
        delivery.sent = 0
        await delivery.deliver(slack.message_event(CHANNEL, ALICE, "at night",
                                                   thread_ts=key.thread), retry=False)
        prompts = await wait_turns(postgres_url, key, 3, 60)
        assert prompts == ["a lighthouse", "doomed", "at night"], "nothing lost, in order"
        survivor = pool[0].log_text()
        assert "dropped a duplicate delivery" in survivor and "took over an orphaned" in survivor
        last = stand_in.generations[-1].body["contents"]
        assert len(last) == 5, "the next turn built on the resumed one, signatures valid"
        # Stored, then posted: the last result's upload may still be on its way.
        await slack.wait_for(lambda: len(results(slack, key)) >= 3, timeout=30)
        await asyncio.sleep(0.5)  # room for a double post to show
        assert len(results(slack, key)) == 3, "every turn posted once, the resumed one too"
        thread = slack.messages(CHANNEL, key.thread)
        told = [m for m in thread if RESUMED in json.dumps(m)]
        assert len(told) == 1, "the resumed result says so, once"
        # The dead worker's "Generating… Cancel" status became the resumed turn's own.
        assert not [m for m in thread if "imagebot_cancel" in json.dumps(m)]
        await stop_worker(pool[0])
