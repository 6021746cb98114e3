"""Wires the core together: store, Gemini client (real or the offline stand-in), service.

Every entry point (CLI, serve, tests, benchmarks) builds its core through :func:`open_core`.
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

OFFLINE_KEY = "offline-stand-in-key"


@dataclass
class Core:
    """The running core: what adapters are given."""

    settings: Settings
    store: HistoryStore
    service: ConversationService
    offline: bool
    gemini_url: str | None


@contextlib.asynccontextmanager
async def open_core(settings: Settings, *, offline: bool | None = None,
                    strict_signatures: bool = True,
                    require_gemini: bool = True) -> AsyncIterator[Core]:
    """Opens the store and the Gemini session; with ``offline`` runs the stand-in in-process.

    ``require_gemini=False`` is for commands that only read the store.

    Raises:
        ImagebotError: when no Gemini key is configured and offline is not asked for.
    """
    offline = settings.offline if offline is None else offline
    async with contextlib.AsyncExitStack() as stack:
        base_url = settings.gemini_base_url
        key = settings.gemini_api_key
        if not key and not offline and not require_gemini:
            key = "unconfigured"  # the client is built but never called (threads, history)
        if offline:
            from offline_gemini import OfflineGemini

            stand_in = OfflineGemini(api_key=OFFLINE_KEY, strict_signatures=strict_signatures)
            base_url = await stand_in.start()
            stack.push_async_callback(stand_in.stop)
            key = OFFLINE_KEY
            logger.info("offline mode: Gemini stand-in at %s", base_url)
        client = build_client(settings, api_key=key, base_url=base_url)
        store = await HistoryStore.open(settings.database_path)
        stack.push_async_callback(store.close)
        session = GeminiSession(client, timeout=settings.gemini_timeout,
                                attempts=settings.gemini_retry_attempts, offline=offline)
        stack.push_async_callback(session.aclose)
        service = ConversationService(store, session, settings)
        yield Core(settings=settings, store=store, service=service, offline=offline,
                   gemini_url=base_url)
