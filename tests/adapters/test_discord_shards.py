"""Discord sharding end to end: discord.py's AutoShardedClient (DISCORD_SHARD_COUNT,
DISCORD_SHARD_IDS) against the Discord emulator, which keeps one gateway session per shard
and routes each guild's events to the shard Discord would, ``(guild_id >> 22) % count``.

Two guilds, one on each of two shards: one process running both shards answers ``/imagine``
in both and reports both on /healthz and /metrics; a worker given shard 1 only connects
shard 1 and never sees the other guild's events."""

from __future__ import annotations

from typing import Any

import aiohttp

from adapters.discord import DiscordAdapter
from adapters.serve import running
from tests.adapters.test_discord import (  # noqa: F401  (the Discord harness's fixtures)
    USER,
    emulator,
    open_bot,
    results,
    settled,
)
from tests.emulators.discord import DiscordEmulator

JSON = dict[str, Any]


def two_guilds(emulator: DiscordEmulator) -> dict[int, str]:  # noqa: F811
    """Adds a guild on the shard the first guild is not on; returns each shard's channel."""
    first = emulator.guild_shard(emulator.guild_id, 2)
    other = emulator.add_guild("Second Guild", shard=(1 - first, 2))
    emulator.recommended_shards = 2
    emulator.sharding_required = True  # an unsharded connection would be refused (4011)
    return {first: emulator.channel_id, 1 - first: other["id"]}


async def imagine_in(emulator: DiscordEmulator, adapter: DiscordAdapter,  # noqa: F811
                     channel_id: str, prompt: str) -> JSON:
    record = await emulator.slash_command("imagine", {"prompt": prompt}, user_id=USER,
                                          channel_id=channel_id)
    await emulator.wait_for(lambda: bool(record.original and record.original["id"]
                                         in emulator.threads))
    await settled(emulator, adapter)
    assert record.original is not None
    return record.original


def delivered_guilds(emulator: DiscordEmulator, shard: int, event: str) -> set[str]:  # noqa: F811
    return {f["d"]["guild_id"] for f in emulator.sessions[shard].log if f["t"] == event}


async def test_one_process_runs_both_shards_and_answers_in_both_guilds(
        make_settings: Any, emulator: DiscordEmulator, stand_in: Any) -> None:  # noqa: F811
    channels = two_guilds(emulator)
    settings = make_settings(stand_in.base_url, discord_token=emulator.token,
                             discord_api_base=emulator.api_base,
                             discord_gateway_url=emulator.gateway_url,
                             discord_shard_count=2)
    async with running(settings, host="127.0.0.1", port=0) as server:
        [adapter] = [a for a in server.adapters if isinstance(a, DiscordAdapter)]
        assert sorted(emulator.sessions) == [0, 1], "one gateway session per shard"
        assert sorted(p["shard"] for p in emulator.identify_payloads) == [[0, 2], [1, 2]]
        assert {g.id for g in adapter.bot.guilds} == {int(g) for g in emulator.guilds}

        heads = {shard: await imagine_in(emulator, adapter, channel, f"a lighthouse {shard}")
                 for shard, channel in channels.items()}
        for shard, channel in channels.items():
            assert results(emulator, channel), f"answered in the guild on shard {shard}"
            guild = emulator.channels[channel]["guild_id"]
            assert heads[shard]["attachments"]
            assert delivered_guilds(emulator, shard, "INTERACTION_CREATE") == {guild}

        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/healthz") as resp:
                health = await resp.json()
            async with http.get(server.url + "/metrics") as resp:
                metrics = await resp.text()
        assert resp.status == 200 and health["ok"]
        shards = health["adapters"]["discord"]["shards"]
        assert sorted(shards) == ["0", "1"] and all(s["connected"] for s in shards.values())
        for shard in ("0", "1"):
            assert f'imagebot_discord_shard_up{{shard="{shard}"}} 1.0' in metrics
            assert f'imagebot_discord_shard_latency_seconds{{shard="{shard}"}}' in metrics


async def test_a_worker_given_shard_1_connects_only_shard_1(
        open_bot: Any, emulator: DiscordEmulator) -> None:  # noqa: F811
    channels = two_guilds(emulator)
    async with open_bot(discord_shard_count=2, discord_shard_ids=("1",)) as (_, adapter):
        assert list(emulator.sessions) == [1]
        assert [p["shard"] for p in emulator.identify_payloads] == [[1, 2]]
        assert list(adapter.status()["shards"]) == ["1"]
        [guild] = adapter.bot.guilds
        assert str(guild.id) == emulator.channels[channels[1]]["guild_id"]

        # The guild on shard 0 belongs to another worker: its command never reaches this one.
        elsewhere = await emulator.slash_command("imagine", {"prompt": "not mine"},
                                                 user_id=USER, channel_id=channels[0])
        await imagine_in(emulator, adapter, channels[1], "mine")
        assert results(emulator, channels[1]) and not results(emulator, channels[0])
        assert elsewhere.callbacks == []
        shard_1_guild = emulator.channels[channels[1]]["guild_id"]
        assert delivered_guilds(emulator, 1, "INTERACTION_CREATE") == {shard_1_guild}

        # The shard's connection drops: it resumes its own session and misses nothing.
        session = emulator.sessions[1].session_id
        await emulator.close_gateway(4000, shard=1)
        starter = await emulator.send_message(channels[1], USER, "while away",
                                              mentions_bot=True)
        await emulator.wait_for(lambda: emulator.resumes == 1)
        await emulator.wait_for(lambda: bool(results(emulator, starter["id"])))
        await settled(emulator, adapter)
        assert emulator.sessions[1].session_id == session and emulator.identifies == 1
