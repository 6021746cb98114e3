"""Overhead of one turn through the whole core versus a bare SDK call with the same payload.

Both run in this process against the offline stand-in at zero latency, interleaved, so
the stand-in's own time is in both. Prints medians and the ratio at 1K and at 4K.
Target: ratio <= 1.25.
"""

from __future__ import annotations

import asyncio
import time

from google.genai import types

from bench.common import bench_core, median_ms
from bot.gemini import build_config
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import OptionInput, resolve
from offline_gemini import render_cached

ROUNDS = 15


async def measure(size: str) -> tuple[float, float]:
    async with bench_core() as (_, core):
        options = resolve(OptionInput(model="pro", size=size), OptionInput(),
                          core.settings.option_defaults, core.settings.models)
        config = build_config(options)
        client = core.service.gemini.client
        bare, full = [], []
        for n in range(ROUNDS + 2):
            prompt = f"a lighthouse at dusk, variant {n}"
            contents = [types.Content(role="user", parts=[types.Part(text=prompt)])]
            # Both sides send the same payload; neither may reuse the other's rendered frame.
            render_cached.cache_clear()
            start = time.perf_counter()
            await client.aio.models.generate_content(model=options.model, contents=contents,
                                                     config=config)
            bare_t = time.perf_counter() - start
            message = IncomingMessage(author=Author("bench"), text=f"{prompt} --size {size}")
            render_cached.cache_clear()
            start = time.perf_counter()
            await core.service.handle(ThreadKey("bench", "", "", f"{size}-{n}"), message)
            full_t = time.perf_counter() - start
            if n >= 2:  # warm-up rounds excluded
                bare.append(bare_t)
                full.append(full_t)
        return median_ms(bare), median_ms(full)


async def main() -> None:
    print(f"overhead: core turn vs bare generate_content, median of {ROUNDS}, stand-in latency 0")
    for size in ("1K", "4K"):
        bare, full = await measure(size)
        print(f"  {size}: bare {bare:8.1f} ms   core {full:8.1f} ms   ratio {full / bare:.3f}"
              "   (target <= 1.25)")


if __name__ == "__main__":
    asyncio.run(main())
