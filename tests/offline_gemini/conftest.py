"""Fixtures for the stand-in's tests: a server on 127.0.0.1 and a real SDK client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google import genai

from offline_gemini import OfflineGemini
from tests.offline_gemini.support import make_client


@pytest.fixture
async def server() -> AsyncIterator[OfflineGemini]:
    async with OfflineGemini() as srv:
        yield srv


@pytest.fixture
async def client(server: OfflineGemini) -> AsyncIterator[genai.Client]:
    sdk = make_client(server.base_url)
    yield sdk
    await sdk.aio.aclose()
