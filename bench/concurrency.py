"""100 threads at once against the stand-in at 2 s latency: total wall time and the worst
event-loop lag seen meanwhile. Targets: total <= 3 s, lag <= 50 ms.

The stand-in runs in its own process, as Gemini would be elsewhere: the loop measured is the
bot's alone. (Run with --in-process to see both sharing one loop.) With --real-sizes the
stand-in answers as the live API does: 1K Pro JPEGs of ~1.35 MB, two thought images and
~1 MB thought signatures per answer, all of which the bot parses and stores. With --web the
turns go through the web playground's API (``POST /api/threads/{id}/turns``, served by
``imagebot serve``'s own HTTP server in this process) instead of calling the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from adapters.serve import running
from bench.common import bench_core, settings_for, stand_in_process
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import Core, open_core

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
async def core_for_run(in_process: bool, real_sizes: bool,
                       web_api: bool) -> AsyncIterator[tuple[Core, str]]:
    """The core, and the playground's URL when the turns go through the web API."""
    if in_process:
        async with bench_core(max_concurrent_turns=THREADS) as (stand_in, core):
            stand_in.faults.latency = LATENCY
            yield core, ""
        return
    async with stand_in_process(LATENCY, real_sizes=real_sizes) as url:
        with tempfile.TemporaryDirectory() as tmp:
            # Capacity for the whole burst: this measures the loop with 100 turns in flight.
            settings = settings_for(url, Path(tmp) / "b.sqlite3", max_concurrent_turns=THREADS)
            if web_api:
                async with running(settings, port=0) as server:
                    yield server.core, server.url
                return
            async with open_core(settings, offline=False) as core:
                yield core, ""


async def through_core(core: Core) -> tuple[float, int]:
    """All threads at once through ``service.handle``; returns wall time and images."""
    started = time.perf_counter()
    replies = await asyncio.gather(*(
        core.service.handle(ThreadKey("bench", "", "", f"t{i}"),
                            IncomingMessage(author=Author("b"), text="a concert poster"))
        for i in range(THREADS)))
    return time.perf_counter() - started, sum(bool(r.images) for r in replies)


async def through_web(url: str) -> tuple[float, int]:
    """All threads at once through the playground's API: ``POST /api/threads`` makes each
    thread, then every ``POST /api/threads/{id}/turns`` goes out together."""
    headers = {"X-Imagebot": "1"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as http:
        ids = []
        for _ in range(THREADS):
            async with http.post("/api/threads", json={}) as resp:
                ids.append((await resp.json())["id"])

        async def turn(thread: str) -> bool:
            form = aiohttp.FormData()
            form.add_field("prompt", "a concert poster")
            async with http.post(f"/api/threads/{thread}/turns", data=form) as resp:
                body = await resp.json()
                return resp.status == 201 and any(p.get("kind") == "image" for p in body["turn"]["parts"])

        started = time.perf_counter()
        done = await asyncio.gather(*(turn(i) for i in ids))
        return time.perf_counter() - started, sum(done)


async def main() -> None:
    in_process = "--in-process" in sys.argv
    real_sizes = "--real-sizes" in sys.argv
    web_api = "--web" in sys.argv
    async with core_for_run(in_process, real_sizes, web_api) as (core, url):
        # Warm the code paths once.
        await core.service.handle(ThreadKey("bench", "", "", "warm"),
                                  IncomingMessage(author=Author("b"), text="warm up"))
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(stop))
        total, images = await (through_web(url) if url else through_core(core))
        stop.set()
        lag = await probe
    assert images == THREADS, f"only {images} of {THREADS} turns made an image"
    where = "in this process" if in_process else "in its own process"
    sizes = "real sizes (1K JPEG ~1.35 MB, ~1 MB signatures)" if real_sizes else "small images"
    path = "the web API (POST /api/threads/{id}/turns)" if url else "the core (service.handle)"
    print(f"concurrency: {THREADS} threads through {path}, stand-in latency {LATENCY:.1f} s, "
          f"stand-in {where}, {sizes}")
    print(f"  total wall time {total:.2f} s (target <= 3 s)")
    print(f"  worst event-loop lag {lag * 1000:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    asyncio.run(main())
