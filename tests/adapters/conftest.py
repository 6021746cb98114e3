"""Fixtures the team-control tests share with the Slack, Discord and browser tests."""

from tests.adapters.test_discord import emulator, open_bot  # noqa: F401
from tests.adapters.test_slack import mode, slack, start_bot  # noqa: F401
from tests.adapters.test_web_browser import artifacts, browser, chromium  # noqa: F401
