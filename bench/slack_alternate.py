"""Slack events for one thread delivered alternately to 2 ``imagebot serve`` workers (HTTP
mode, one PostgreSQL database), each followed by its retry to the other worker.

Targets: exactly one generation per event, and the thread's history in delivery order.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.scale_common import postgres_schema
from bot.model import ThreadKey
from bot.runtime import open_store
from offline_gemini import OfflineGemini
from tests.emulators.slack import SlackEmulator
from tests.workers import SlackDelivery, workers

EVENTS = 20
KEY = "bench-key"
CHANNEL, USER = "C0BENCH01", "U0BENCH01"


async def history(url: str, key: ThreadKey) -> list[str]:
    store = await open_store(url)
    try:
        return [t.prompt for t in await store.list_turns(key)]
    finally:
        await store.close()


async def main() -> None:
    stand_in = OfflineGemini(api_key=KEY, strict_signatures=True)
    stand_in.faults.latency = 0.5
    await stand_in.start()
    slack = SlackEmulator()
    await slack.start()
    slack.add_user(USER, "bench")
    slack.add_channel(CHANNEL, "bench")
    try:
        async with postgres_schema() as url:
            with tempfile.TemporaryDirectory() as tmp:
                env = {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": stand_in.base_url,
                       "DATABASE_URL": url, "SLACK_BOT_TOKEN": slack.bot_token,
                       "SLACK_SIGNING_SECRET": slack.signing_secret,
                       "SLACK_API_URL": slack.api_url, "IMAGEBOT_LOG_LEVEL": "WARNING"}
                async with workers(2, env, Path(tmp)) as pool:
                    delivery = SlackDelivery(slack, pool)
                    root = slack.app_mention_event(CHANNEL, USER, "event 0")
                    key = ThreadKey("slack", slack.team_id, CHANNEL, root["ts"])
                    start = time.perf_counter()
                    await delivery.deliver(root)
                    for n in range(1, EVENTS):
                        await delivery.deliver(slack.message_event(
                            CHANNEL, USER, f"event {n}", thread_ts=key.thread))
                    await slack.wait_for(lambda: len(slack.calls_to("files.completeUploadExternal"))
                                         >= EVENTS, timeout=120)
                    elapsed = time.perf_counter() - start
                    prompts = await history(url, key)
    finally:
        await slack.stop()
        await stand_in.stop()
    generations = sum(1 for r in stand_in.requests if r.body and "contents" in r.body)
    in_order = prompts == [f"event {n}" for n in range(EVENTS)]
    print(f"slack_alternate: {EVENTS} events + {EVENTS} retries over 2 workers in "
          f"{elapsed:.1f} s: {generations} generations (target {EVENTS}), history in "
          f"delivery order: {in_order}")
    if generations != EVENTS or not in_order:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
