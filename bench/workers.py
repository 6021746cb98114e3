"""200 threads x 3 turns through the web playground API of 1, then 2 ``imagebot serve``
workers on one PostgreSQL database, the stand-in at 1 s latency in its own process.

Each thread's turns go to alternating workers (a person sends the next message once the
last result is there). Target: 2 workers reach >= 1.8x the throughput of 1, and every
thread's turns are stored in the order they were sent.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import KEY, stand_in_process
from bench.scale_common import postgres_schema
from bot.model import ThreadKey
from bot.runtime import open_store
from tests.workers import Worker, workers

THREADS = 200
TURNS = 3
LATENCY = 1.0


async def one_thread(session: aiohttp.ClientSession, pool: list[Worker], n: int) -> None:
    for turn in range(TURNS):
        worker = pool[(n + turn) % len(pool)]
        form = aiohttp.FormData({"prompt": f"thread {n} turn {turn}: a poster --ar 1:1"})
        async with session.post(f"{worker.url}/api/threads/b{n}/turns", data=form,
                                headers={"X-Imagebot": "1"}) as response:
            if response.status != 201:
                raise RuntimeError(f"turn failed: {response.status} {await response.text()}")


async def run(count: int, stand_in: str) -> float:
    async with postgres_schema() as url:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": stand_in, "DATABASE_URL": url,
                   "GEMINI_RETRY_ATTEMPTS": "1", "IMAGEBOT_LOG_LEVEL": "WARNING"}
            async with workers(count, env, Path(tmp)) as pool:
                limits = aiohttp.TCPConnector(limit=0)
                timeout = aiohttp.ClientTimeout(total=600)
                async with aiohttp.ClientSession(connector=limits, timeout=timeout) as session:
                    await one_thread(session, pool, -1)  # warm up
                    start = time.perf_counter()
                    await asyncio.gather(*(one_thread(session, pool, n)
                                           for n in range(THREADS)))
                    elapsed = time.perf_counter() - start
        await check_order(url)
    return elapsed


async def check_order(url: str) -> None:
    store = await open_store(url)
    try:
        for n in range(THREADS):
            prompts = [t.prompt for t in await store.list_turns(ThreadKey("web", "", "", f"b{n}"))]
            expected = [f"thread {n} turn {k}: a poster" for k in range(TURNS)]
            if prompts != expected:
                raise AssertionError(f"thread {n} out of order: {prompts}")
    finally:
        await store.close()


async def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1, 2]
    results = {}
    async with stand_in_process(LATENCY) as stand_in:
        for count in counts:
            results[count] = await run(count, stand_in)
            turns = THREADS * TURNS
            print(f"{count} worker(s): {turns} turns in {results[count]:.1f} s = "
                  f"{turns / results[count]:.1f} turns/s; order held in all {THREADS} threads",
                  flush=True)
    if 1 in results and 2 in results:
        print(f"2 workers / 1 worker throughput: {results[1] / results[2]:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    asyncio.run(main())
