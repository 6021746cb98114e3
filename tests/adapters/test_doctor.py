"""``imagebot doctor`` against the stand-in and the Slack and Discord emulators."""

import io

from adapters.doctor import doctor
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
