"""A Slack turn whose worker died is taken over by a running ``serve``: its sweeper finds
the orphaned ticket, and the turn runs and posts in its thread, in its workspace (with
that workspace's own bot token when it was installed through OAuth)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.resume import RESUMED
from adapters.serve import running
from adapters.slack.events import SlackMessage
from adapters.slack.resume import message_request
from bot.leases import Place, ThreadLines
from bot.model import ThreadKey
from bot.runtime import Core
from tests.adapters.test_slack_oauth import ALICE, CHANNEL, TEAM, in_team, install
from tests.emulators.slack import SlackEmulator


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_channel(CHANNEL, "studio")
    yield emulator
    await emulator.stop()


async def died_with(core: Core, key: ThreadKey, message: SlackMessage) -> None:
    """Another worker accepted ``message`` and died before posting anything."""
    dead = ThreadLines(core.service.store, ttl=0.3)
    place = dead.place(key)
    assert isinstance(place, Place)
    place.request = message_request(message, message.text, pick_up=False,
                                    bot_user_id="U0BOT").to_json()
    await place.__aenter__()
    await dead.close()


async def posted_turns(core: Core, key: ThreadKey, count: int) -> list[str]:
    """The thread's prompts once ``count`` turns are stored and posted (or after 30 s)."""
    for _ in range(300):
        turns = await core.service.history(key)
        if len(turns) >= count and all(t.platform_refs for t in turns):
            break
        await asyncio.sleep(0.1)
    return [t.prompt for t in turns]


async def test_an_oauth_workspaces_orphaned_turn_posts_with_its_own_token(
        slack: SlackEmulator, stand_in, make_settings):
    settings = make_settings(
        stand_in.base_url, slack_client_id=slack.client_id, lease_seconds=0.9,
        slack_client_secret=slack.client_secret, slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url)
    async with running(settings, port=0) as server:
        slack.oauth_redirect_url = server.url + "/slack/oauth_redirect"
        async with aiohttp.ClientSession() as session:
            assert (await install(session, server.url)).startswith("200")
        [token] = slack.installs
        event = slack.app_mention_event(CHANNEL, ALICE, "a lighthouse")
        in_team(slack.event_envelope(event), TEAM)
        key = ThreadKey("slack", TEAM, CHANNEL, event["ts"])
        await died_with(server.core, key, SlackMessage(
            kind="app_mention", team=TEAM, channel=CHANNEL, channel_type="", user=ALICE,
            ts=event["ts"], thread_ts=None, text="a lighthouse --ar 3:2", files=()))

        assert await posted_turns(server.core, key, 1) == ["a lighthouse"]
        assert any(RESUMED in json.dumps(m) for m in slack.messages(CHANNEL, event["ts"]))
        used = [c.headers["Authorization"] for c in slack.calls_to("chat.postMessage")
                + slack.calls_to("files.completeUploadExternal")]
        assert used and all(u == f"Bearer {token}" for u in used)
        [turn] = await server.core.service.history(key)
        assert turn.options["aspect_ratio"] == "3:2" and turn.platform_refs
