"""A worker SIGKILLed mid-turn: how long until the other worker has taken the turn over and
posted it in the Slack thread, against the lease (``IMAGEBOT_LEASE_SECONDS``).

Two ``imagebot serve`` workers (HTTP mode, one PostgreSQL database), the stand-in at 0 s
once the doomed worker is gone. Expected: the takeover within the lease plus the sweep
interval (a third of this short lease; at most 1 s), then one generation; the turn is in
the history once, in order.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.scale_common import postgres_schema
from bot.model import ThreadKey
from bot.runtime import open_store
from offline_gemini import OfflineGemini
from tests.emulators.slack import SlackEmulator
from tests.workers import SlackDelivery, workers

ROUNDS = 3
LEASE = 3.0
KEY = "bench-key"
CHANNEL, USER = "C0BENCH01", "U0BENCH01"


async def prompts_of(url: str, key: ThreadKey) -> list[str]:
    store = await open_store(url)
    try:
        return [t.prompt for t in await store.list_turns(key)]
    finally:
        await store.close()


async def one_round(stand_in: OfflineGemini, slack: SlackEmulator, url: str) -> float:
    """Seconds from the kill to the resumed turn's result in the thread."""
    env = {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": stand_in.base_url, "DATABASE_URL": url,
           "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": slack.signing_secret,
           "SLACK_API_URL": slack.api_url, "IMAGEBOT_LOG_LEVEL": "WARNING",
           "IMAGEBOT_LEASE_SECONDS": str(LEASE)}
    with tempfile.TemporaryDirectory() as tmp:
        async with workers(2, env, Path(tmp)) as pool:
            delivery = SlackDelivery(slack, pool)
            root = slack.app_mention_event(CHANNEL, USER, "a lighthouse")
            key = ThreadKey("slack", slack.team_id, CHANNEL, root["ts"])
            stand_in.faults.latency = 0.0
            await delivery.deliver(root)
            await slack.wait_for(lambda: len(posted(slack, key)) == 1, timeout=60)
            stand_in.faults.latency = 60.0
            asked = len(stand_in.requests)
            await delivery.deliver(slack.message_event(CHANNEL, USER, "doomed",
                                                       thread_ts=key.thread), retry=False)
            await slack.wait_for(lambda: len(stand_in.requests) > asked, timeout=30)
            pool[1].kill()
            await pool[1].process.wait()
            killed = time.perf_counter()
            stand_in.faults.latency = 0.0
            await slack.wait_for(lambda: len(posted(slack, key)) == 2, timeout=60)
            elapsed = time.perf_counter() - killed
            prompts = await prompts_of(url, key)
    if prompts != ["a lighthouse", "doomed"]:
        raise SystemExit(f"takeover: the history is {prompts}")
    return elapsed


def posted(slack: SlackEmulator, key: ThreadKey) -> list[dict]:
    """The thread's result uploads (not the drafts a thinking model shows meanwhile)."""
    return [m for m in slack.messages(CHANNEL, key.thread)
            if any(not str(f.get("name")).startswith("imagebot-draft-")
                   for f in m.get("files") or ())]


async def main() -> None:
    stand_in = OfflineGemini(api_key=KEY, strict_signatures=True)
    await stand_in.start()
    slack = SlackEmulator()
    await slack.start()
    slack.add_user(USER, "bench")
    slack.add_channel(CHANNEL, "bench")
    times = []
    try:
        async with postgres_schema() as url:
            for _ in range(ROUNDS):
                times.append(await one_round(stand_in, slack, url))
    finally:
        await slack.stop()
        await stand_in.stop()
    median = statistics.median(times)
    print(f"takeover: a worker killed mid-turn, its turn posted by the other "
          f"{', '.join(f'{t:.1f}' for t in times)} s after the kill (median {median:.1f} s, "
          f"{median / LEASE:.2f}x the {LEASE:g} s lease; target <= 1.33x + one turn)")


if __name__ == "__main__":
    asyncio.run(main())
