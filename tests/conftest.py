"""Shared fixtures: the offline Gemini stand-in over real HTTP, settings, and a running core."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.runtime import Core, open_core
from offline_gemini import OfflineGemini

TEST_KEY = "test-gemini-key"


@pytest.fixture
async def stand_in() -> AsyncIterator[OfflineGemini]:
    server = OfflineGemini(api_key=TEST_KEY, strict_signatures=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(gemini_url: str | None = None, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "gemini_api_key": TEST_KEY,
            "gemini_base_url": gemini_url,
            "database_url": f"sqlite:///{tmp_path / 'imagebot.sqlite3'}",
            "gemini_retry_attempts": 3,
            "gemini_retry_initial_delay": 0.01,
            "gemini_retry_max_delay": 0.05,
            "gemini_timeout": 20.0,
        }
        base.update(overrides)
        return load_settings(env={}, **base)

    return make


@pytest.fixture
def core_factory(stand_in: OfflineGemini, make_settings: Callable[..., Settings]):
    """Opens a core (store + real SDK client) against the stand-in; several may be opened."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Core]:
        async with open_core(make_settings(stand_in.base_url, **overrides), offline=False) as core:
            yield core

    return factory


@pytest.fixture
async def core(core_factory) -> AsyncIterator[Core]:
    async with core_factory() as opened:
        yield opened
