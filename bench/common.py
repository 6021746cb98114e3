"""Shared setup for the benchmarks: a stand-in on loopback and a core against it."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings
from bot.runtime import Core, open_core
from offline_gemini import OfflineGemini

KEY = "bench-key"


def settings_for(url: str, db: Path, **overrides: Any) -> Settings:
    return load_settings(env={}, gemini_api_key=KEY, gemini_base_url=url,
                         database_url=f"sqlite:///{db}", gemini_retry_attempts=1,
                         **overrides)


@contextlib.asynccontextmanager
async def bench_core(**overrides: Any) -> AsyncIterator[tuple[OfflineGemini, Core]]:
    stand_in = OfflineGemini(api_key=KEY, strict_signatures=True)
    url = await stand_in.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_core(settings_for(url, Path(tmp) / "bench.sqlite3", **overrides),
                                 offline=False) as core:
                yield stand_in, core
    finally:
        await stand_in.stop()


@contextlib.asynccontextmanager
async def stand_in_process(latency: float, *, real_sizes: bool = False, nice: bool = True,
                           admin: bool = False) -> AsyncIterator[str]:
    """The stand-in in a separate process (``python -m offline_gemini``), so its work does
    not share the measured loop.

    With ``real_sizes`` it answers as the live API does (Pro JPEG, ~1 MB signatures); with
    ``nice`` it runs at the lowest CPU priority; with ``admin`` it serves ``/_admin/stats``.
    """
    proc = await asyncio.create_subprocess_exec(
        *(["nice", "-n", "19"] if nice else []), sys.executable, "-m", "offline_gemini",
        "--port", "0", "--api-key", KEY, "--latency", str(latency),
        *(["--real-sizes"] if real_sizes else []), *(["--admin"] if admin else []),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        yield line.decode().strip()
    finally:
        proc.terminate()
        await proc.wait()


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def stand_in_stats(url: str) -> dict[str, Any]:
    """The stand-in's ``/_admin/stats`` (started with ``admin=True``)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{url}/_admin/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
