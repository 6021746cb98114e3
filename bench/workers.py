"""200 threads x 3 turns through the web playground API of 1, then 2 ``imagebot serve``
workers on one PostgreSQL database, the stand-in at 1 s latency in its own process.

Each thread's turns go to alternating workers (a person sends the next message once the
last result is there). Target: 2 workers reach >= 1.8x the throughput of 1, and every
thread's turns are stored in the order they were sent.

What it measures: each worker takes at most ``--cap`` turns at Gemini at once
(``IMAGEBOT_MAX_CONCURRENT_TURNS``, 8 by default here), so 200 threads keep one worker at
its capacity and the run is capacity-bound, as a busy production worker is. Without a cap
one worker would hold all 200 threads' calls at once and the run would be latency-bound
(about 3 x 1 s plus overhead): a second worker could not help. The stand-in reuses one
drawn frame per size (``--stock-frames``; ``--draw`` to draw each), so its drawing does
not compete with the workers for the CPU. CPU per turn is printed for each process.

    python -m bench.workers [COUNTS...] [--cap N] [--draw]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import KEY
from bench.scale_common import (
    StandIn,
    cpu_seconds,
    own_cpu_seconds,
    postgres_cpu_seconds,
    postgres_schema,
    stand_in,
    thread_cpu_seconds,
)
from bot.model import ThreadKey
from bot.runtime import open_store
from tests.workers import Worker, workers

THREADS = 200
TURNS = 3
LATENCY = 1.0
CAP = 8


@dataclass
class Run:
    """One run's figures."""

    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    most_in_flight: float = 0.0
    most_waiting: float = 0.0


async def one_thread(session: aiohttp.ClientSession, pool: list[Worker], n: int) -> None:
    for turn in range(TURNS):
        worker = pool[(n + turn) % len(pool)]
        form = aiohttp.FormData({"prompt": f"thread {n} turn {turn}: a poster --ar 1:1"})
        async with session.post(f"{worker.url}/api/threads/b{n}/turns", data=form,
                                headers={"X-Imagebot": "1"}) as response:
            if response.status != 201:
                raise RuntimeError(f"turn failed: {response.status} {await response.text()}")


async def gauges(session: aiohttp.ClientSession, pool: list[Worker]) -> tuple[float, float]:
    """Turns in flight and waiting, summed over the workers' ``/metrics``."""
    totals = {"imagebot_turns_in_flight": 0.0, "imagebot_turns_waiting": 0.0}
    for worker in pool:
        async with session.get(f"{worker.url}/metrics") as response:
            for line in (await response.text()).splitlines():
                name, _, value = line.partition(" ")
                if name in totals:
                    totals[name] += float(value)
    return totals["imagebot_turns_in_flight"], totals["imagebot_turns_waiting"]


async def sample(session: aiohttp.ClientSession, pool: list[Worker], run: Run) -> None:
    while True:
        in_flight, waiting = await gauges(session, pool)
        run.most_in_flight = max(run.most_in_flight, in_flight)
        run.most_waiting = max(run.most_waiting, waiting)
        await asyncio.sleep(0.5)


def cpu_now(pool: list[Worker], stand: StandIn) -> dict[str, float]:
    cpu = {"workers": sum(cpu_seconds(w.process.pid) for w in pool),
           "stand-in": cpu_seconds(stand.pid), "client": own_cpu_seconds(),
           "PostgreSQL (all sessions)": postgres_cpu_seconds()}
    for worker in pool:
        for name, seconds in thread_cpu_seconds(worker.process.pid).items():
            key = f"workers' {name} thread{'' if name == 'main' else 's'}"
            cpu[key] = cpu.get(key, 0.0) + seconds
    return cpu


async def measure(session: aiohttp.ClientSession, pool: list[Worker], stand: StandIn
                  ) -> Run:
    run = Run()
    await one_thread(session, pool, -1)  # warm up
    before = cpu_now(pool, stand)
    sampler = asyncio.create_task(sample(session, pool, run))
    start = time.perf_counter()
    try:
        await asyncio.gather(*(one_thread(session, pool, n) for n in range(THREADS)))
        run.elapsed = time.perf_counter() - start
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = cpu_now(pool, stand)
    run.cpu = {name: after[name] - before[name] for name in before}
    return run


async def run_with(count: int, stand: StandIn, cap: int) -> Run:
    async with postgres_schema() as url:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": stand.url, "DATABASE_URL": url,
                   "GEMINI_RETRY_ATTEMPTS": "1", "IMAGEBOT_LOG_LEVEL": "WARNING",
                   "IMAGEBOT_MAX_CONCURRENT_TURNS": str(cap)}
            async with workers(count, env, Path(tmp)) as pool:
                limits = aiohttp.TCPConnector(limit=0)
                timeout = aiohttp.ClientTimeout(total=900)
                async with aiohttp.ClientSession(connector=limits, timeout=timeout) as session:
                    run = await measure(session, pool, stand)
        await check_order(url)
    return run


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


def report(count: int, cap: int, run: Run) -> str:
    turns = THREADS * TURNS
    cpu = ", ".join(f"{name} {seconds / turns * 1000:.1f}" for name, seconds in run.cpu.items())
    return (f"{count} worker(s), at most {cap} turns at Gemini each: {turns} turns in "
            f"{run.elapsed:.1f} s = {turns / run.elapsed:.1f} turns/s (capacity-bound ideal "
            f"{count * cap / LATENCY:.0f}/s); most in flight {run.most_in_flight:.0f}, most "
            f"waiting {run.most_waiting:.0f}; order held in all {THREADS} threads\n"
            f"  CPU ms per turn: {cpu}")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("counts", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--cap", type=int, default=CAP,
                        help=f"IMAGEBOT_MAX_CONCURRENT_TURNS per worker (default {CAP})")
    parser.add_argument("--draw", action="store_true",
                        help="the stand-in draws every frame (no --stock-frames)")
    args = parser.parse_args()
    results = {}
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs", flush=True)
    async with stand_in(LATENCY, stock_frames=not args.draw) as stand:
        for count in args.counts:
            results[count] = await run_with(count, stand, args.cap)
            print(report(count, args.cap, results[count]), flush=True)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if 1 in results and 2 in results:
        ratio = results[1].elapsed / results[2].elapsed
        print(f"2 workers / 1 worker throughput: {ratio:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    asyncio.run(main())
