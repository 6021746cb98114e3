"""Builds the core: the store (SQLite or PostgreSQL, from ``DATABASE_URL``), the Gemini session (against a configured or given endpoint)
and the conversation service.

The composition in ``adapters`` opens a core with :func:`open_core` and hands adapters
its service; the core itself knows nothing of adapters or of the offline stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import DEFAULT_GEMINI_URL, Settings
from bot.installations import Installations
from bot.service import ConversationService
from bot.store_api import Store

logger = logging.getLogger(__name__)


@dataclass
class Core:
    """The running core: what adapters are given (they talk to ``service`` only)."""

    settings: Settings
    service: ConversationService
    offline: bool
    gemini_url: str | None
    #: Platform installations (Slack OAuth), in the same database.
    installations: Installations


@contextlib.asynccontextmanager
async def open_core(settings: Settings, *, base_url: str | None = None,
                    api_key: str | None = None, offline: bool = False,
                    gemini: bool = True) -> AsyncIterator[Core]:
    """Opens the store and the Gemini session.

    Args:
        settings: the configuration.
        base_url: the Gemini endpoint (default: the configured one).
        api_key: the key (default: the configured one).
        offline: the endpoint is the offline stand-in, so replies are marked previews.
        gemini: False for commands that only read the store: no client is built and
            google.genai is never imported (it costs ~0.6 s of CPU).

    Raises:
        ConfigError: when there is no key at all.
    """
    async with contextlib.AsyncExitStack() as stack:
        url = base_url or settings.gemini_base_url
        client = None
        if gemini:
            from bot.gemini import GeminiSession, build_client

            client = build_client(settings, api_key=api_key, base_url=url)
        store = await open_store(settings.database_url or f"sqlite:///{settings.database_path}",
                                 synchronous_commit=settings.pg_synchronous_commit)
        stack.push_async_callback(store.close)
        session = None
        if client is not None:
            session = GeminiSession(
                client, timeout=settings.gemini_timeout, attempts=settings.gemini_retry_attempts,
                offline=offline,
                files_namespace=files_namespace(url, api_key or settings.gemini_api_key))
            stack.push_async_callback(session.aclose)
        service = ConversationService(store, session, settings, lease=settings.lease_seconds)
        stack.push_async_callback(service.lines.close)
        stack.push_async_callback(service.files.drain)  # first: uploads need the session
        yield Core(settings=settings, service=service, offline=offline, gemini_url=url,
                   installations=Installations(store))


def files_namespace(base_url: str | None, api_key: str | None) -> str:
    """Names an endpoint and key together (files uploaded with one key are readable with
    that key only), without keeping the key itself."""
    text = f"{(base_url or DEFAULT_GEMINI_URL).rstrip('/')}\n{api_key or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


async def open_store(url: str, *, synchronous_commit: str | None = None) -> Store:
    """Opens (and migrates) the store a database URL names: ``postgresql://…`` or
    ``sqlite:///path``. ``synchronous_commit`` is PostgreSQL's (the server's own when
    None); SQLite ignores it.

    Raises:
        ConfigError: a URL of neither kind.
    """
    from bot.config import database_path_of, is_postgres_url

    if is_postgres_url(url):
        from bot.store_pg import PgHistoryStore

        return await PgHistoryStore.open(url, synchronous_commit=synchronous_commit)
    from bot.store import HistoryStore

    return await HistoryStore.open(database_path_of(url, "DATABASE_URL"))


def expected_schema(url: str) -> int:
    """The schema version this imagebot writes for a database URL's kind."""
    from bot.config import is_postgres_url

    if is_postgres_url(url):
        from bot.store_pg import SCHEMA_VERSION as PG_VERSION

        return PG_VERSION
    from bot.store import SCHEMA_VERSION

    return SCHEMA_VERSION


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
    url = settings.database_url or f"sqlite:///{settings.database_path}"
    store = await open_store(url)
    try:
        return DatabaseState(path=settings.database_location(),
                             version=await store.schema_version(),
                             expected=expected_schema(url), writable=await store.writable())
    finally:
        await store.close()
