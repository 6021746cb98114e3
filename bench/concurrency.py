"""100 threads at once against the stand-in at 2 s latency: total wall time and the worst
event-loop lag seen meanwhile. Targets: total <= 3 s, lag <= 50 ms.

The stand-in runs in its own process, as Gemini would be elsewhere: the loop measured is the
bot's alone. (Run with --in-process to see both sharing one loop.) With --real-sizes the
stand-in answers as the live API does: 1K Pro JPEGs of ~1.35 MB, two thought images and
~1 MB thought signatures per answer, all of which the bot parses and stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from bench.common import bench_core, settings_for, stand_in_process
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import open_core

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


@contextlib.asynccontextmanager
async def core_for_run(in_process: bool, real_sizes: bool):
    if in_process:
        async with bench_core() as (stand_in, core):
            stand_in.faults.latency = LATENCY
            yield core
        return
    async with stand_in_process(LATENCY, real_sizes=real_sizes) as url:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_core(settings_for(url, Path(tmp) / "b.sqlite3"),
                                 offline=False) as core:
                yield core


async def main() -> None:
    in_process = "--in-process" in sys.argv
    real_sizes = "--real-sizes" in sys.argv
    async with core_for_run(in_process, real_sizes) as core:
        # Warm the code paths once.
        await core.service.handle(ThreadKey("bench", "", "", "warm"),
                                  IncomingMessage(author=Author("b"), text="warm up"))
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(stop))
        start = time.perf_counter()
        replies = await asyncio.gather(*(
            core.service.handle(ThreadKey("bench", "", "", f"t{i}"),
                                IncomingMessage(author=Author("b"),
                                                text="a concert poster"))
            for i in range(THREADS)))
        total = time.perf_counter() - start
        stop.set()
        lag = await probe
    assert all(r.images for r in replies)
    where = "in this process" if in_process else "in its own process"
    sizes = "real sizes (1K JPEG ~1.35 MB, ~1 MB signatures)" if real_sizes else "small images"
    print(f"concurrency: {THREADS} threads, stand-in latency {LATENCY:.1f} s, stand-in {where}, "
          f"{sizes}")
    print(f"  total wall time {total:.2f} s (target <= 3 s)")
    print(f"  worst event-loop lag {lag * 1000:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    asyncio.run(main())
