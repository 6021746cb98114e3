"""Fixtures the team-control tests share with the Slack and Discord end-to-end tests."""

from tests.adapters.test_discord import emulator, open_bot  # noqa: F401
from tests.adapters.test_slack import mode, slack, start_bot  # noqa: F401
