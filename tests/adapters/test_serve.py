"""``imagebot serve``: the startup plan, health and metrics, shutdown, and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest

import adapters.serve as serve_module
from adapters.serve import StartupError, plan, running
from bot.errors import CancelledTurn, GenerationError
from bot.model import Author, IncomingMessage, ThreadKey
from tests.conftest import TEST_KEY

KEY = ThreadKey("test", "", "", "serve")


def test_plan_without_anything_is_offline_playground(make_settings):
    run = plan(make_settings(None, gemini_api_key=None))
    assert run.offline and run.web and not run.slack and not run.discord
    assert any("offline" in n for n in run.notes)


def test_plan_refuses_platform_tokens_without_gemini_key(make_settings):
    settings = make_settings(None, gemini_api_key=None, discord_token="a.b.c")
    with pytest.raises(StartupError, match="GEMINI_API_KEY"):
        plan(settings)
    assert plan(settings, offline=True).offline


def test_plan_web_needs_token_off_loopback(make_settings):
    assert not plan(make_settings(None, host="0.0.0.0")).web
    assert plan(make_settings(None, host="0.0.0.0", web_token="t0ken-123")).web
    assert plan(make_settings(None, host="127.0.0.1")).web


def test_plan_slack_needs_a_mode(make_settings):
    with pytest.raises(StartupError, match="SLACK_APP_TOKEN"):
        plan(make_settings(None, slack_bot_token="xoxb-1"))


async def test_health_metrics_and_a_turn(stand_in, make_settings):
    settings = make_settings(stand_in.base_url)
    async with running(settings, host="127.0.0.1", port=0) as server:
        await server.core.service.handle(KEY, IncomingMessage(Author("u"), "a fox"))
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/healthz") as resp:
                health = await resp.json()
                assert resp.status == 200
            async with http.get(server.url + "/metrics") as resp:
                metrics = await resp.text()
    assert health["ok"] and health["database"] == "writable" and not health["offline"]
    assert "web" in health["adapters"]
    assert 'imagebot_turns_total{model="gemini-3-pro-image-preview",platform="test"} 1.0' in metrics
    assert "imagebot_turn_seconds_bucket" in metrics and "imagebot_queue_depth" in metrics
    assert 'imagebot_tokens_total{model="gemini-3-pro-image-preview",type="output"}' in metrics
    cost = re.search(r'imagebot_cost_usd_total\{model="gemini-3-pro-image-preview",'
                     r'platform="test"\} ([0-9.e-]+)', metrics)
    assert cost and 0.134 < float(cost.group(1)) < 0.2


async def test_non_loopback_without_token_serves_health_not_playground(stand_in, make_settings):
    settings = make_settings(stand_in.base_url, host="0.0.0.0")
    async with running(settings, port=0) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(url + "/") as resp:
                assert resp.status == 200 and "playground is off" in await resp.text()
            async with http.get(url + "/api/threads") as resp:
                assert resp.status == 404
    assert [a.name for a in server.adapters] == []


async def test_error_metrics(stand_in, make_settings):
    async with running(make_settings(stand_in.base_url), port=0) as server:
        stand_in.faults.queue_finish("IMAGE_SAFETY")
        with pytest.raises(GenerationError):
            await server.core.service.handle(KEY, IncomingMessage(Author("u"), "x"))
        text = server.metrics.render().decode()
    assert 'imagebot_errors_total{kind="safety"} 1.0' in text


async def test_shutdown_finishes_turns_in_flight(stand_in, make_settings):
    stand_in.faults.latency = 0.5
    async with running(make_settings(stand_in.base_url), port=0) as server:
        task = asyncio.create_task(server.core.service.handle(
            KEY, IncomingMessage(Author("u"), "finish me")))
        await asyncio.sleep(0.1)
        store_path = server.core.service.store.path
    reply = await task
    assert reply.images
    from bot.store import HistoryStore

    store = await HistoryStore.open(store_path)
    assert len(await store.list_turns(KEY)) == 1
    await store.close()


async def test_shutdown_cancels_cleanly_after_grace(stand_in, make_settings, monkeypatch):
    monkeypatch.setattr(serve_module, "SHUTDOWN_GRACE", 0.2)
    stand_in.faults.latency = 5
    async with running(make_settings(stand_in.base_url), port=0) as server:
        task = asyncio.create_task(server.core.service.handle(
            KEY, IncomingMessage(Author("u"), "too slow")))
        await asyncio.sleep(0.2)
        store_path = server.core.service.store.path
    with pytest.raises(CancelledTurn) as err:
        await task
    assert "restarting" in err.value.user_message and "send it again" in err.value.user_message
    from bot.store import HistoryStore

    store = await HistoryStore.open(store_path)
    assert not await store.thread_exists(KEY), "nothing half-written"
    await store.close()


async def test_serve_process_sigterm_and_refusal(stand_in, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_", "GOOGLE_", "SLACK_", "DISCORD_", "IMAGEBOT_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "serve", "--port", "0",
        env={**env, "DISCORD_TOKEN": "a.b.c"}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, _ = await refused.communicate()
    assert refused.returncode == 2 and b"GEMINI_API_KEY" in out

    env.update(GEMINI_API_KEY=TEST_KEY, GEMINI_BASE_URL=stand_in.base_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "serve", "--port", "0", "--log-format", "json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("imagebot is running at http://127.0.0.1:")
    url = line.split()[4]
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        assert resp.status == 200
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert TEST_KEY not in err.decode()
    assert '"level": "INFO"' in err.decode()


async def test_serve_forgets_expired_file_records_at_start(stand_in, make_settings):
    import sqlite3
    import time

    from bot.store import HistoryStore
    from bot.store_files import FileRecord

    settings = make_settings(stand_in.base_url)
    store = await HistoryStore.open(settings.database_path)
    for name, expires in (("old", time.time() - 60), ("live", time.time() + 3600)):
        await store.files.save("ns", FileRecord(name, f"files/{name}", f"u/{name}",
                                                "image/png", expires))
    await store.close()
    async with running(settings, port=0):
        for _ in range(100):
            db = sqlite3.connect(settings.database_path)
            left = [r[0] for r in db.execute("SELECT sha256 FROM gemini_files")]
            db.close()
            if left == ["live"]:
                break
            await asyncio.sleep(0.02)
    assert left == ["live"]
