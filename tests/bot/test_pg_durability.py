"""PostgreSQL commits are as durable as the server makes them by default;
``IMAGEBOT_PG_SYNCHRONOUS_COMMIT`` (or ``?synchronous_commit=`` in the URL) opts out."""

from __future__ import annotations

import asyncpg
import pytest

from bot.config import ConfigError, load_settings
from bot.runtime import open_core, open_store


async def server_default(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT reset_val FROM pg_settings "
                                       "WHERE name = 'synchronous_commit'"))
    finally:
        await conn.close()


async def setting_of(store) -> str:
    return str(await store.pool.fetchval("SHOW synchronous_commit"))


async def test_by_default_a_commit_waits_as_the_server_says(postgres_url: str):
    store = await open_store(postgres_url)
    try:
        assert await setting_of(store) == await server_default(postgres_url)
    finally:
        await store.close()


async def test_the_setting_opts_out_through_the_core(make_settings, stand_in, postgres_url):
    settings = make_settings(stand_in.base_url, database_url=postgres_url,
                             pg_synchronous_commit="off")
    async with open_core(settings) as core:
        assert await setting_of(core.service.store) == "off"


async def test_a_url_parameter_applies_when_the_setting_is_unset(postgres_url: str):
    store = await open_store(postgres_url + "&synchronous_commit=local")
    try:
        assert await setting_of(store) == "local"
    finally:
        await store.close()
    store = await open_store(postgres_url + "&synchronous_commit=local",
                             synchronous_commit="off")
    try:
        assert await setting_of(store) == "off", "the setting wins over the URL"
    finally:
        await store.close()


def test_the_environment_variable_is_read_and_checked():
    env = {"IMAGEBOT_PG_SYNCHRONOUS_COMMIT": "off"}
    assert load_settings(env=env).pg_synchronous_commit == "off"
    assert load_settings(env={}).pg_synchronous_commit is None
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"IMAGEBOT_PG_SYNCHRONOUS_COMMIT": "maybe"})
    message = str(refused.value)
    assert "IMAGEBOT_PG_SYNCHRONOUS_COMMIT must be one of on, off, local" in message
    assert "'maybe'" in message
