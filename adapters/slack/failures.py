"""What a Slack call can raise once the client's retry handlers gave up, and how to name it."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

#: What a Slack call can raise once the client's retry handlers gave up.
SLACK_FAILURES = (SlackClientError, aiohttp.ClientError, TimeoutError)


def slack_error(exc: BaseException) -> str:
    """A short name for a Slack failure, for the user and the log (never the request)."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__
