"""The composition root: the offline stand-in when asked for, then the core.

Every entry point (the CLI, ``serve``, ``doctor``, benchmarks) opens the core through
:func:`open_app`, so offline mode means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from bot.config import Settings
from bot.runtime import Core, open_core

logger = logging.getLogger(__name__)

OFFLINE_KEY = "offline-stand-in-key"
#: A placeholder key for commands that only read the store (the client is never called).
UNCONFIGURED_KEY = "unconfigured"


@contextlib.asynccontextmanager
async def open_app(settings: Settings, *, offline: bool | None = None,
                   strict_signatures: bool = True,
                   require_gemini: bool = True) -> AsyncIterator[Core]:
    """Opens the core; with ``offline`` it first starts the stand-in in this process.

    ``require_gemini=False`` is for commands that only read the store.

    Raises:
        ConfigError: when no Gemini key is configured and offline is not asked for.
    """
    offline = settings.offline if offline is None else offline
    async with contextlib.AsyncExitStack() as stack:
        key = settings.gemini_api_key
        base_url = settings.gemini_base_url
        if not key and not offline and not require_gemini:
            key = UNCONFIGURED_KEY
        if offline:
            from offline_gemini import OfflineGemini

            stand_in = OfflineGemini(api_key=OFFLINE_KEY, strict_signatures=strict_signatures,
                                     stream_gap=settings.offline_stream_gap)
            base_url = await stand_in.start()
            stack.push_async_callback(stand_in.stop)
            key = OFFLINE_KEY
            logger.info("offline mode: Gemini stand-in at %s", base_url)
        core = await stack.enter_async_context(
            open_core(settings, base_url=base_url, api_key=key, offline=offline,
                      gemini=require_gemini or offline))
        yield core
