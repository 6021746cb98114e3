"""Slack start-up: an unreachable Slack fails fast with one line, a slow one is bounded by
a timeout, a signal during start-up stops ``serve`` cleanly, and a start makes no noise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord import DiscordAdapter
from adapters.serve import running
from adapters.slack import SlackAdapter
from bot.errors import ErrorKind, ImagebotError
from offline_gemini import OfflineGemini
from tests.conftest import TEST_KEY
from tests.emulators.slack import SlackEmulator


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Silent:
    """A server that accepts connections and never answers (Slack behind a black hole)."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Silent:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/api/"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up


@pytest.fixture
def serve_env(stand_in: OfflineGemini, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_", "GOOGLE_", "SLACK_", "DISCORD_", "IMAGEBOT_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", GEMINI_API_KEY=TEST_KEY,
               GEMINI_BASE_URL=stand_in.base_url, SLACK_BOT_TOKEN="xoxb-1-test",
               SLACK_APP_TOKEN="xapp-1-test")
    return env


@contextlib.asynccontextmanager
async def serve_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m adapters serve``; killed at the end if it is still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "serve", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def test_serve_fails_fast_with_one_line_when_slack_is_unreachable(
        serve_env: dict[str, str]) -> None:
    serve_env["SLACK_API_URL"] = f"http://127.0.0.1:{closed_port()}/api/"
    began = time.monotonic()
    async with serve_process(serve_env) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert time.monotonic() - began < 30
    [line] = out.decode().splitlines()
    assert line.startswith("imagebot: Could not reach Slack at http://127.0.0.1:")
    assert "SLACK_API_URL" in line
    assert "Traceback" not in err.decode()
    assert "will be unused" not in err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_during_a_slow_start_stops_serve(serve_env: dict[str, str],
                                                        sig: signal.Signals) -> None:
    async with Silent() as slack:
        serve_env["SLACK_API_URL"] = slack.api_url
        async with serve_process(serve_env) as proc:
            deadline = time.monotonic() + 20
            while not slack.connections:  # start-up now waits on Slack
                assert time.monotonic() < deadline and proc.returncode is None
                await asyncio.sleep(0.05)
            proc.send_signal(sig)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["imagebot: stopped during start-up"]
    assert "Traceback" not in err.decode()


async def test_the_connection_is_bounded_by_a_timeout(core_factory: Any) -> None:
    async with Silent() as slack, core_factory(
            slack_bot_token="xoxb-1", slack_app_token="xapp-1",
            slack_api_url=slack.api_url) as core:
        adapter = SlackAdapter(core, connect_timeout=0.5)
        began = time.monotonic()
        with pytest.raises(ImagebotError) as raised:
            await asyncio.wait_for(adapter.start(), 10)
        assert time.monotonic() - began < 5
    assert raised.value.kind == ErrorKind.STARTUP
    assert "Could not connect to Slack Socket Mode" in raised.value.user_message
    assert "within 0.5s" in raised.value.user_message


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


async def test_a_refused_app_token_says_so(core_factory: Any, slack: SlackEmulator) -> None:
    async with core_factory(slack_bot_token=slack.bot_token, slack_app_token="xapp-1-wrong",
                            slack_api_url=slack.api_url) as core:
        with pytest.raises(ImagebotError) as raised:
            await asyncio.wait_for(SlackAdapter(core).start(), 10)
    assert raised.value.kind == ErrorKind.STARTUP
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in raised.value.user_message


async def test_starting_makes_no_noise(core_factory: Any, slack: SlackEmulator,
                                       monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    # bolt reads SLACK_BOT_TOKEN itself; serve has it in the environment.
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
    # discord.py warns once per process; make this the first time.
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    caplog.set_level(logging.DEBUG)
    async with core_factory(slack_bot_token=slack.bot_token, slack_app_token=slack.app_token,
                            slack_api_url=slack.api_url, discord_token="a.b.c") as core:
        adapter = SlackAdapter(core)
        await asyncio.wait_for(adapter.start(), 10)
        await adapter.stop()
        DiscordAdapter(core)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Slack adapter running (Socket Mode)" in text
    assert "will be unused" not in text
    assert "voice will NOT be supported" not in text
    assert not any(r.levelno >= logging.WARNING for r in caplog.records), text


async def test_a_failing_stop_is_logged_and_the_rest_still_stop(
        slack: SlackEmulator, stand_in: OfflineGemini, make_settings: Any,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken_stop(self: SlackAdapter) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(SlackAdapter, "stop", broken_stop)
    settings = make_settings(stand_in.base_url, slack_bot_token=slack.bot_token,
                             slack_api_url=slack.api_url,
                             slack_signing_secret=slack.signing_secret)
    async with running(settings, port=0) as server:
        assert [a.name for a in server.adapters] == ["web", "slack"]
        url = server.url
    assert any(r.getMessage() == "stopping the slack adapter failed (RuntimeError)"
               for r in caplog.records)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz"):
            pass
