"""Multi-workspace Slack: a workspace installs imagebot through bolt's OAuth flow
(``/slack/install`` -> Slack's authorize page -> ``/slack/oauth_redirect``), the install
is kept in imagebot's database, and that workspace's events are answered with its own bot
token. Run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.serve import running
from bot.model import ThreadKey
from tests.conftest import TEST_KEY
from tests.emulators.slack import SlackEmulator

CHANNEL = "C0STUDIO1"
ALICE = "U0ALICE1"
TEAM, TEAM_NAME = "T0SECOND", "Second Team"


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_channel(CHANNEL, "studio")
    yield emulator
    await emulator.stop()


def in_team(envelope: dict, team: str) -> dict:
    """An event as Slack delivers it from another workspace the app is installed in."""
    envelope["team_id"] = envelope["context_team_id"] = team
    envelope["authorizations"][0]["team_id"] = team
    envelope["event"]["team"] = team
    return envelope


async def install(session: aiohttp.ClientSession, base: str) -> str:
    """A browser going through the install: the page, Slack's consent, the redirect."""
    async with session.get(base + "/slack/install") as page:
        assert page.status == 200
        found = re.search(r'href="([^"]*/oauth/v2/authorize[^"]*)"', await page.text())
        # bolt's state cookie is Secure; over plain loopback HTTP the test carries it.
        cookie = page.headers["Set-Cookie"].split(";")[0]
    assert found is not None
    link = html.unescape(found.group(1))
    assert "state=" in link and "client_id=" in link
    # The emulator's consent page approves at once, for this workspace and installer.
    consent = f"{link}&team={TEAM}&team_name={TEAM_NAME}&user=U0ADMIN"
    async with session.get(consent, allow_redirects=False) as approved:
        assert approved.status == 302
        callback = approved.headers["Location"]
    assert callback.startswith(base + "/slack/oauth_redirect?code=")
    async with session.get(callback, headers={"Cookie": cookie}) as done:
        return f"{done.status} {await done.text()}"


async def test_a_workspace_installs_through_oauth_and_is_answered_with_its_token(
        slack: SlackEmulator, stand_in, make_settings, database_url):
    settings = make_settings(
        stand_in.base_url, database_url=database_url, slack_client_id=slack.client_id,
        slack_client_secret=slack.client_secret, slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url)
    assert settings.gemini_api_key == TEST_KEY
    async with running(settings, port=0) as server:
        slack.oauth_redirect_url = server.url + "/slack/oauth_redirect"
        async with aiohttp.ClientSession() as session:
            outcome = await install(session, server.url)
        assert outcome.startswith("200"), outcome
        [(token, workspace)] = slack.installs.items()
        assert workspace == (TEAM, TEAM_NAME)
        saved = await server.core.installations.find("slack", f":{TEAM}")
        assert saved is not None and saved["bot_token"] == token

        event = slack.app_mention_event(CHANNEL, ALICE, "a lighthouse")
        status, _ = await slack.send_http_event(server.url + "/slack/events",
                                                in_team(slack.event_envelope(event), TEAM))
        assert status == 200
        await slack.wait_for(lambda: bool(slack.calls_to("files.completeUploadExternal")), 30)
        upload = slack.calls_to("files.completeUploadExternal")[0]
        assert upload.headers["Authorization"] == f"Bearer {token}"
        # The first upload may be a draft shown while Pro thinks: wait for the stored turn.
        key = ThreadKey("slack", TEAM, CHANNEL, event["ts"])
        for _ in range(300):
            turns = await server.core.service.history(key)
            if turns:
                break
            await asyncio.sleep(0.1)
        assert [t.prompt for t in turns] == ["a lighthouse"]
        assert all(c.headers["Authorization"] == f"Bearer {token}"
                   for c in slack.calls_to("chat.postMessage"))


async def test_a_reused_or_forged_state_is_refused(slack: SlackEmulator, stand_in,
                                                  make_settings):
    settings = make_settings(
        stand_in.base_url, slack_client_id=slack.client_id,
        slack_client_secret=slack.client_secret, slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url)
    async with running(settings, port=0) as server:
        slack.oauth_redirect_url = server.url + "/slack/oauth_redirect"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            url = server.url + "/slack/oauth_redirect?code=nope&state=forged"
            async with session.get(url) as answer:
                assert answer.status in (400, 401, 403)
        assert slack.installs == {}
