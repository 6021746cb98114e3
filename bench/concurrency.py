"""100 threads at once against the stand-in at 2 s latency: total wall time and the worst
event-loop lag seen meanwhile. Targets: total <= 3 s, lag <= 50 ms.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import bench_core
from bot.model import Author, IncomingMessage, ThreadKey

THREADS = 100
LATENCY = 2.0


async def lag_probe(stop: asyncio.Event, interval: float = 0.005) -> float:
    worst = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(interval)
        worst = max(worst, loop.time() - start - interval)
    return worst


async def main() -> None:
    async with bench_core() as (stand_in, core):
        # Warm the connection pool and code paths once.
        await core.service.handle(ThreadKey("bench", "", "", "warm"),
                                  IncomingMessage(author=Author("b"), text="warm up"))
        stand_in.faults.latency = LATENCY
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(stop))
        start = time.perf_counter()
        replies = await asyncio.gather(*(
            core.service.handle(ThreadKey("bench", "", "", f"t{i}"),
                                IncomingMessage(author=Author("b"), text=f"poster {i}"))
            for i in range(THREADS)))
        total = time.perf_counter() - start
        stop.set()
        lag = await probe
    assert all(r.images for r in replies)
    print(f"concurrency: {THREADS} threads, stand-in latency {LATENCY:.1f} s")
    print(f"  total wall time {total:.2f} s (target <= 3 s)")
    print(f"  worst event-loop lag {lag * 1000:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    asyncio.run(main())
