"""Overhead of a turn through the whole core versus a bare SDK call with the same contents.

The stand-in runs in ANOTHER process (``python -m offline_gemini``, zero latency), so its
rendering is not charged to either side. The baseline is a bare
``client.aio.models.generate_content`` from a client of its own, given exactly the contents
the core would send for the same turn (history images as Files API references, thought
signatures inline); the core side is ``service.handle``: plan, restore the thread from
SQLite, build and send the request, parse, store. Both sides are interleaved, with prompts
of equal length that differ, so the stand-in never reuses a frame rendered for the other.

Measured on the first turn of a thread and on turn 30 (the thread is built to 29 turns
first; each core round's turn is then deleted again). Prints medians of wall time and of
this process's CPU time, and their ratios. Target: wall ratio <= 1.25.

    python -m bench.overhead [--real-sizes] [--size 1K|2K|4K] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import settings_for, stand_in_process
from bot.gemini import build_client, build_config
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import OptionInput, Options, resolve
from bot.runtime import Core, open_core
from bot.turn_request import Shape, TurnRequests, user_content

DEEP = 30


@dataclass
class Samples:
    wall: list[float]
    cpu: list[float]

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    def median(self) -> tuple[float, float]:
        return statistics.median(self.wall) * 1000, statistics.median(self.cpu) * 1000


async def timed(coro) -> tuple[object, float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = await coro
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def measure(core: Core, options: Options, key: ThreadKey, *, deep: bool,
                  rounds: int) -> tuple[Samples, Samples]:
    service = core.service
    bare_client = build_client(core.settings)
    window = core.settings.signature_window
    requests = TurnRequests(service.store, service.gemini, service.files,  # type: ignore[arg-type]
                            asyncio.Semaphore(4), signatures=window)
    config = build_config(options)
    bare, full = Samples([], []), Samples([], [])
    flags = f"--size {options.size}" if options.size else ""
    try:
        for n in range(rounds + 2):
            thread = key if deep else ThreadKey(key.platform, "", "", f"{key.thread}-{n}")
            core_prompt, bare_prompt = f"a lighthouse, core {n:03d}", f"a lighthouse, bare {n:03d}"
            user = user_content(bare_prompt, [])
            # The request the core's own turn makes: files and the default signature window.
            request = await requests.build(thread, user, options.model,
                                           shape=Shape(model_files=True, window=window),
                                           limit=core.settings.max_request_bytes)
            sides = [("bare", bare_client.aio.models.generate_content(
                         model=options.model, contents=request.contents, config=config)),
                     ("core", service.handle(thread, IncomingMessage(
                         author=Author("bench"), text=f"{core_prompt} {flags}")))]
            for name, call in sides if n % 2 else reversed(sides):
                result, wall, cpu = await timed(call)
                if n >= 2:  # warm-up rounds left out
                    (bare if name == "bare" else full).add(wall, cpu)
                if name == "core" and deep:
                    await service.delete(result.turn_id)  # type: ignore[attr-defined]
    finally:
        await bare_client.aio.aclose()
    return bare, full


async def build_thread(core: Core, key: ThreadKey, size: str | None) -> None:
    flags = f" --size {size}" if size else ""
    for n in range(DEEP - 1):
        await core.service.handle(key, IncomingMessage(author=Author("bench"),
                                                       text=f"frame {n}, warmer{flags}"))


def report(label: str, bare: Samples, full: Samples) -> None:
    (bare_wall, bare_cpu), (core_wall, core_cpu) = bare.median(), full.median()
    print(f"  {label:<9} wall: bare {bare_wall:8.1f} ms  core {core_wall:8.1f} ms  "
          f"ratio {core_wall / bare_wall:5.2f}   cpu: bare {bare_cpu:7.1f} ms  "
          f"core {core_cpu:7.1f} ms  ratio {core_cpu / bare_cpu:5.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead")
    parser.add_argument("--real-sizes", action="store_true")
    parser.add_argument("--size", default="1K")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    async with stand_in_process(0.0, real_sizes=args.real_sizes, nice=False) as url:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_core(settings_for(url, Path(tmp) / "b.sqlite3"),
                                 offline=False) as core:
                options = resolve(OptionInput(model="pro", size=args.size), OptionInput(),
                                  core.settings.option_defaults, core.settings.models)
                sizes = "real sizes" if args.real_sizes else "small images"
                print(f"overhead: core turn vs bare generate_content with the same contents, "
                      f"Pro {args.size}, {sizes}, stand-in in another process at latency 0, "
                      f"median of {args.rounds} (target: wall ratio <= 1.25)")
                bare, full = await measure(core, options, ThreadKey("bench", "", "", "first"),
                                           deep=False, rounds=args.rounds)
                report("turn 1", bare, full)
                deep = ThreadKey("bench", "", "", "deep")
                await build_thread(core, deep, args.size)
                bare, full = await measure(core, options, deep, deep=True, rounds=args.rounds)
                report(f"turn {DEEP}", bare, full)


if __name__ == "__main__":
    asyncio.run(main())
