"""``imagebot doctor`` against the stand-in and the Slack and Discord emulators."""

import io

import pytest

from adapters.doctor import doctor
from adapters.serve import StartupError, plan
from tests.emulators.discord import DiscordEmulator
from tests.emulators.slack import SlackEmulator

GOOD_GEMINI = "AIza" + "x" * 35
GOOD_SLACK = "xoxb-1234-5678-abcdef"
GOOD_DISCORD = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.GabcDe.abcdefghijklmnopqrstuvwxyz12345"


async def test_everything_configured_and_answering(stand_in, make_settings):
    slack = SlackEmulator(bot_token=GOOD_SLACK)
    discord = DiscordEmulator(token=GOOD_DISCORD)
    await slack.start()
    await discord.start()
    try:
        stand_in.api_key = GOOD_GEMINI
        settings = make_settings(
            stand_in.base_url, gemini_api_key=GOOD_GEMINI, slack_bot_token=GOOD_SLACK,
            slack_app_token="xapp-1-A0-123", slack_api_url=slack.api_url,
            discord_token=GOOD_DISCORD, discord_api_base=discord.api_base)
        out = io.StringIO()
        code = await doctor(settings, out)
    finally:
        await slack.stop()
        await discord.stop()
    text = out.getvalue()
    assert code == 0, text
    assert "configured: gemini, slack, discord" in text
    assert "[ok] gemini endpoint" in text and "(key accepted)" in text
    assert "[ok] slack auth.test" in text and "[ok] discord login" in text
    assert "[ok] database" in text and "FAIL" not in text
    for secret in (GOOD_GEMINI, GOOD_SLACK, GOOD_DISCORD):
        assert secret not in text


async def test_problems_are_reported_with_fixes(make_settings, tmp_path):
    settings = make_settings("http://127.0.0.1:9", gemini_api_key="not-a-key",
                             slack_bot_token="xoxp-user-token",
                             slack_api_url="http://127.0.0.1:9/api/")
    out = io.StringIO()
    code = await doctor(settings, out)
    text = out.getvalue()
    assert code == 1
    assert "[FAIL] gemini_api_key format" in text and "aistudio.google.com" in text
    assert "[FAIL] slack_bot_token format" in text and "xoxb" in text
    assert "[FAIL] gemini endpoint" in text and "did not answer" in text
    assert "[FAIL] slack auth.test" in text
    assert "not-a-key" not in text and "xoxp-user-token" not in text


def no_endpoints(make_settings, **overrides):
    """Settings whose endpoints are a closed local port: nothing leaves the machine."""
    return make_settings("http://127.0.0.1:9", slack_api_url="http://127.0.0.1:9/api/",
                         discord_api_base="http://127.0.0.1:9/api/v10", **overrides)


async def test_no_key_and_no_tokens_is_the_offline_playground(make_settings):
    settings = no_endpoints(make_settings, gemini_api_key=None)
    plan(settings)  # serve starts
    out = io.StringIO()
    assert await doctor(settings, out) == 0
    text = out.getvalue()
    assert "[ok] gemini key: not set: `imagebot serve` runs only the web playground" in text
    assert f"database: {settings.database_path} (from" in text


async def test_no_key_with_tokens_says_serve_refuses_to_start(make_settings):
    settings = no_endpoints(make_settings, gemini_api_key=None, discord_token=GOOD_DISCORD)
    with pytest.raises(StartupError):
        plan(settings)  # what serve does, and what doctor must say
    out = io.StringIO()
    assert await doctor(settings, out) == 1
    text = out.getvalue()
    assert "[FAIL] gemini key: not set, but Discord is configured: `imagebot serve` refuses" \
        in text
    assert "offline stand-in" not in text


@pytest.mark.parametrize(("extra", "ok", "words"), [
    ({}, False, "neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET"),
    ({"slack_app_token": "xapp-1-A0-123"}, True, "Socket Mode"),
    ({"slack_signing_secret": "0" * 32}, True, "HTTP mode"),
])
async def test_slack_needs_an_app_token_or_a_signing_secret(make_settings, extra, ok, words):
    settings = no_endpoints(make_settings, gemini_api_key=GOOD_GEMINI,
                            slack_bot_token=GOOD_SLACK, **extra)
    if ok:
        plan(settings)
    else:
        with pytest.raises(StartupError):
            plan(settings)
    out = io.StringIO()
    await doctor(settings, out)
    line = next(ln for ln in out.getvalue().splitlines() if "slack mode" in ln)
    assert line.startswith("[ok]" if ok else "[FAIL]") and words in line, line
