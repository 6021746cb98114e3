"""Builds the core: the store, the Gemini session (against a configured or given endpoint)
and the conversation service.

The composition in ``adapters`` opens a core with :func:`open_core` and hands adapters
its service; the core itself knows nothing of adapters or of the offline stand-in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import Settings
from bot.gemini import GeminiSession, build_client
from bot.service import ConversationService
from bot.store import HistoryStore

logger = logging.getLogger(__name__)


@dataclass
class Core:
    """The running core: what adapters are given (they talk to ``service`` only)."""

    settings: Settings
    service: ConversationService
    offline: bool
    gemini_url: str | None


@contextlib.asynccontextmanager
async def open_core(settings: Settings, *, base_url: str | None = None,
                    api_key: str | None = None, offline: bool = False) -> AsyncIterator[Core]:
    """Opens the store and the Gemini session.

    Args:
        settings: the configuration.
        base_url: the Gemini endpoint (default: the configured one).
        api_key: the key (default: the configured one).
        offline: the endpoint is the offline stand-in, so replies are marked previews.

    Raises:
        ConfigError: when there is no key at all.
    """
    async with contextlib.AsyncExitStack() as stack:
        url = base_url or settings.gemini_base_url
        client = build_client(settings, api_key=api_key, base_url=url)
        store = await HistoryStore.open(settings.database_path)
        stack.push_async_callback(store.close)
        session = GeminiSession(client, timeout=settings.gemini_timeout,
                                attempts=settings.gemini_retry_attempts, offline=offline)
        stack.push_async_callback(session.aclose)
        service = ConversationService(store, session, settings)
        yield Core(settings=settings, service=service, offline=offline, gemini_url=url)


@dataclass(frozen=True)
class DatabaseState:
    """What ``doctor`` reports of the database."""

    path: str
    version: int
    expected: int
    writable: bool


async def database_state(settings: Settings) -> DatabaseState:
    """Opens the database (migrating it), checks it takes writes, and closes it.

    Raises:
        Exception: whatever opening the database raised (doctor reports it).
    """
    from bot.store import SCHEMA_VERSION

    store = await HistoryStore.open(settings.database_path)
    try:
        return DatabaseState(path=str(settings.database_path),
                             version=await store.schema_version(), expected=SCHEMA_VERSION,
                             writable=await store.writable())
    finally:
        await store.close()
