"""Shared setup for the benchmarks: a stand-in on loopback and a core against it."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings
from bot.offline_gemini import OfflineGemini
from bot.runtime import Core, open_core

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


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000
