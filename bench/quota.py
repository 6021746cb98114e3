"""What letting a turn in costs: the policy read, the plan and the quota reservation (one
write transaction that sums the ledger for every quota), with a month of history in the
ledger. Prints the median admission time, and how long 200 admissions at once take.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import bench_core, median_ms
from bot.model import Author, IncomingMessage, ThreadKey

HISTORY = 30_000   # ledger rows: a busy month
BURST = 200
POLICY = {"daily_budget_usd": 1e9, "daily_images_per_user": 10**6,
          "daily_images_per_channel": 10**6,
          "workspaces": {"slack/T1": {"daily_budget_usd": 1e9}},
          "channels": {"slack/T1/C1": {"daily_images_per_user": 10**6}}}


async def fill(core, rows: int) -> None:
    now = time.time()
    db = core.service.store.db
    await db.executemany(
        "INSERT INTO ledger (id, state, kind, platform, workspace, channel, thread, user_id, "
        "user_name, model, size, images, cost_usd, day, created_at) VALUES "
        "(?, 'committed', 'turn', 'slack', 'T1', ?, 't', ?, 'u', 'gemini-3-pro-image-preview', "
        "'1K', 1, 0.134, '2026-01-01', ?)",
        [(f"h{n}", f"C{n % 20}", f"U{n % 300}", now - (n % 30) * 86400 - 60)
         for n in range(rows)])


async def main() -> None:
    async with bench_core(policy=POLICY) as (_, core):
        await fill(core, HISTORY)
        service = core.service
        message = IncomingMessage(author=Author("U7", "u"), text="a concert poster")
        samples = []
        for n in range(100):
            start = time.perf_counter()
            admission = await service.admit(ThreadKey("slack", "T1", "C1", f"t{n}"), message)
            samples.append(time.perf_counter() - start)
            await service.release(admission)
        start = time.perf_counter()
        burst = await asyncio.gather(*(service.admit(ThreadKey("slack", "T1", "C1", f"b{n}"),
                                                     message) for n in range(BURST)))
        total = time.perf_counter() - start
        assert len(burst) == BURST
    print(f"quota: {HISTORY:,} ledger rows, 6 quotas checked per turn")
    print(f"  one admission (policy, plan, reservation): median {median_ms(samples):.2f} ms")
    print(f"  {BURST} admissions at once: {total * 1000:.0f} ms "
          f"({total / BURST * 1000:.2f} ms each, serialized by the write transaction)")


if __name__ == "__main__":
    asyncio.run(main())
