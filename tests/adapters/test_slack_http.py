"""Slack's HTTP mode: what reaches ``/slack/events`` unsigned, oversized or unparseable is
refused with a 4xx and one short log line, before slack-bolt sees it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from adapters.serve import running
from adapters.slack.library_logs import LOG_LIMIT, BoltLogFilter
from offline_gemini import OfflineGemini
from tests.emulators.slack import SlackEmulator


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user("U0ALICE1", "alice")
    emulator.add_channel("C0STUDIO1", "studio")
    yield emulator
    await emulator.stop()


@pytest.fixture
async def events_url(slack: SlackEmulator, stand_in: OfflineGemini,
                     make_settings: Callable[..., Any]) -> AsyncIterator[str]:
    settings = make_settings(stand_in.base_url, slack_bot_token=slack.bot_token,
                             slack_api_url=slack.api_url,
                             slack_signing_secret=slack.signing_secret)
    async with running(settings, port=0) as server:
        yield server.url + "/slack/events"


def signed(slack: SlackEmulator, body: bytes, *, timestamp: str | None = None,
           content_type: str = "application/json") -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    signature = SignatureVerifier(slack.signing_secret).generate_signature(
        timestamp=ts, body=body)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": str(signature)}


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.post(url, data=body, headers=headers) as response:
        return response.status, await response.text()


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


async def test_an_unsigned_request_costs_one_short_log_line(
        events_url: str, slack: SlackEmulator, caplog: pytest.LogCaptureFixture) -> None:
    forged = "2026-11-30 12:00:00 INFO imagebot: admin logged in"
    # A slash command's form body, with a line break and a forged log line in its text.
    body = urlencode({"token": slack.verification_token, "command": "/imagine",
                      "text": f"fox\n{forged}", "user_id": "U0ALICE1"}).replace("%0A", "\n")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    caplog.set_level(logging.DEBUG)
    assert (await post(events_url, body.encode(), form))[0] == 401
    bad = signed(slack, body.encode(), content_type=form["Content-Type"])
    bad["X-Slack-Signature"] = "v0=" + "0" * 64
    assert (await post(events_url, body.encode(), bad))[0] == 401
    text = log_text(caplog)
    assert forged not in text and slack.verification_token not in text
    assert "/imagine" not in text
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert [r.getMessage().rsplit(": ", 1)[1] for r in refusals] == \
        ["missing signature (HTTP 401)", "bad signature (HTTP 401)"]
    assert not slack.calls


async def test_stale_and_malformed_timestamps_are_refused(
        events_url: str, slack: SlackEmulator, caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"type": "event_callback"}'
    stale = signed(slack, body, timestamp=str(int(time.time()) - 600))
    assert (await post(events_url, body, stale))[0] == 401
    malformed = signed(slack, body) | {"X-Slack-Request-Timestamp": "soon"}
    assert (await post(events_url, body, malformed))[0] == 401
    assert "stale timestamp" in log_text(caplog) and "malformed timestamp" in log_text(caplog)
    assert not any(r.exc_info for r in caplog.records)


async def test_a_huge_body_is_refused_unread(events_url: str, slack: SlackEmulator,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # As serve's logging does (bot.logs.THIRD_PARTY_LOGGERS): the batch poller's queries,
    # which may run in this window, are not what this test is about.
    caplog.set_level(logging.WARNING, logger="aiosqlite")
    body = b'{"type": "' + b"a" * (5 * 2**20) + b'"}'
    assert (await post(events_url, body, signed(slack, body)))[0] == 413
    assert len(log_text(caplog)) < 1000


async def test_a_signed_body_that_does_not_parse_is_a_400_without_a_traceback(
        events_url: str, slack: SlackEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for body, content_type in ((b"this is not json", "application/json"),
                               (b"[1, 2]", "application/json"),
                               (b"payload=%7Bnot-json", "application/x-www-form-urlencoded")):
        status, _ = await post(events_url, body, signed(slack, body, content_type=content_type))
        assert status == 400, body
    not_utf8 = b"\xff\xfe{}"
    assert (await post(events_url, not_utf8, {"Content-Type": "application/json"}))[0] == 400
    assert not any(r.exc_info for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    assert len([r for r in caplog.records if "unparseable body" in r.getMessage()]) == 3


async def test_signed_traffic_still_reaches_bolt(events_url: str, slack: SlackEmulator,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    challenge = json.dumps({"token": slack.verification_token, "challenge": "c4a11",
                            "type": "url_verification"}).encode()
    status, text = await post(events_url, challenge, signed(slack, challenge))
    assert status == 200 and "c4a11" in text
    # An event nobody listens to: bolt logs "Unhandled request", but not its body.
    unhandled = json.dumps({"token": slack.verification_token, "type": "event_callback",
                            "team_id": "T0001", "api_app_id": "A0APP",
                            "event": {"type": "reaction_added", "user": "U0ALICE1"},
                            "event_id": "Ev1", "event_time": 1}).encode()
    assert (await post(events_url, unhandled, signed(slack, unhandled)))[0] == 404
    assert slack.verification_token not in log_text(caplog)
    assert "refused" not in log_text(caplog)


def test_bolt_log_lines_lose_bodies_and_line_breaks() -> None:
    record = logging.LogRecord(
        "slack_bolt.AsyncRequestVerification", logging.INFO, __file__, 1,
        "Invalid request signature detected (signature: %s, timestamp: %s, body: %s)",
        ("v0=abc", "1", 'token=secret\nFORGED LINE' + "x" * 10**6), None)
    assert BoltLogFilter().filter(record)
    message = record.getMessage()
    assert message.endswith("body: [body withheld]")
    assert "secret" not in message and "\n" not in message and len(message) <= LOG_LIMIT
