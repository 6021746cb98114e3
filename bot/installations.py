"""Platform installations and OAuth states, for adapters that install into many
workspaces (Slack's OAuth flow): the one door to them, so adapters never reach the store.

Installations are JSON documents keyed by the platform's own ids; states are one-time
random strings with an expiry. Both live in the shared database, so any worker can finish
an install another started and serve every installed workspace.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from bot.store_api import InstallationStore

#: How long an OAuth state may wait for its callback (Slack's own flow allows 10 minutes).
STATE_TTL = 600.0


class Installations:
    """Installations and OAuth states in the store."""

    def __init__(self, store: InstallationStore) -> None:
        self._store = store

    async def save(self, platform: str, key: str, data: Mapping[str, Any]) -> None:
        await self._store.save_installation(platform, key, data)

    async def find(self, platform: str, key: str) -> dict[str, Any] | None:
        return await self._store.find_installation(platform, key)

    async def delete(self, platform: str, key: str) -> bool:
        return await self._store.delete_installation(platform, key)

    async def issue_state(self, ttl: float = STATE_TTL) -> str:
        """A new random OAuth state, valid once for ``ttl`` seconds."""
        state = secrets.token_urlsafe(24)
        await self._store.issue_state(state, time.time() + ttl)
        return state

    async def consume_state(self, state: str) -> bool:
        return await self._store.consume_state(state)
