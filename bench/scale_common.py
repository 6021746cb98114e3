"""Shared setup for the scale-out benchmarks: a PostgreSQL schema and worker processes.

PostgreSQL comes from ``IMAGEBOT_TEST_POSTGRES_URL`` (as in the tests) or a throwaway
server started from the local binaries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tests import postgres


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL naming a fresh schema, dropped afterwards."""
    with postgres.server_url() as base:
        schema = postgres.new_schema()
        try:
            yield postgres.schema_url(base, schema)
        finally:
            await postgres.drop_schema(base, schema)
