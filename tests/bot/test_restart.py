"""Restart equivalence and crash atomicity, with the CLI running in separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from bot.config import DEFAULT_MODELS
from bot.gemini import build_config
from bot.options import PRO, OptionInput, resolve
from tests import corpus
from tests.conftest import TEST_KEY
from tests.wire import file_parts, resolved

PROMPTS = ["a red fox in a meadow", "make it night --ar 16:9 --size 2K", "add a full moon"]


def _env(stand_in, db: Path, *, files: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_", "GOOGLE_", "IMAGEBOT_", "DATABASE_"))}
    env.update(GEMINI_API_KEY=TEST_KEY, GEMINI_BASE_URL=stand_in.base_url,
               DATABASE_URL=f"sqlite:///{db}", GEMINI_RETRY_ATTEMPTS="1",
               IMAGEBOT_USE_FILES_API="true" if files else "false",
               # An uninterrupted chat sends every signature back: so does this thread.
               IMAGEBOT_HISTORY_SIGNATURES="all")
    return env


async def run_cli(env: dict[str, str], *args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", *args, env=env, cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def cli_turn(env, tmp_path, thread, prompt, *images: Path) -> str:
    image_args = [a for p in images for a in ("--image", str(p))]
    proc = await run_cli(env, "chat", "--thread", thread, "--out", str(tmp_path / "out"),
                         *image_args, *prompt.split(), cwd=tmp_path)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def normalized(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


@pytest.mark.parametrize("files", [True, False], ids=["files-api", "inline"])
async def test_restored_thread_sends_what_an_uninterrupted_chat_sends(stand_in, tmp_path,
                                                                       files):
    ref = tmp_path / "ref.png"
    ref.write_bytes(corpus.png(80, 60))

    # 1. The SDK's own in-memory chat, never interrupted.
    client = genai.Client(api_key=TEST_KEY, http_options=types.HttpOptions(
        base_url=stand_in.base_url, api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1)))
    chat = client.aio.chats.create(model=PRO)
    settings = OptionInput()
    from bot.options import parse_inline

    for n, prompt in enumerate(PROMPTS):
        text, given = parse_inline(prompt)
        settings = given.over(settings)
        options = resolve(settings, OptionInput(), OptionInput(model="pro"), DEFAULT_MODELS)
        message: list = [text]
        if n == 0:
            message.append(types.Part.from_bytes(data=ref.read_bytes(), mime_type="image/png"))
        await chat.send_message(message, config=build_config(options))
    await client.aio.aclose()
    reference = [normalized(r.body) for r in stand_in.requests]
    assert len(reference) == 3
    stand_in.requests.clear()

    # 2. imagebot, a new process per turn, restoring the thread from SQLite each time.
    #    With the Files API, history images go as file references: resolved to their
    #    bytes, the requests are the uninterrupted chat's, byte for byte.
    env = _env(stand_in, tmp_path / "db.sqlite3", files=files)
    for n, prompt in enumerate(PROMPTS):
        await cli_turn(env, tmp_path, "fox", prompt, *([ref] if n == 0 else []))
    sent = [r.body for r in stand_in.generations]  # Pro is streamed: streamGenerateContent
    restored = [normalized(resolved(body, stand_in)) for body in sent]
    assert restored == reference
    # Turn 2 names the reference and turn 1's three images (two of them thoughts) as files.
    assert [file_parts(body) for body in sent] == ([0, 4, 7] if files else [0, 0, 0])
    # Each image uploaded once, turn 3's too: in the background, once it was stored.
    assert stand_in.files.uploaded == (10 if files else 0), "each image uploaded once"


async def test_killed_mid_turn_leaves_history_unchanged(stand_in, tmp_path):
    db = tmp_path / "db.sqlite3"
    env = _env(stand_in, db)
    await cli_turn(env, tmp_path, "t", "a lighthouse")
    from adapters.cli import thread_key
    from bot.store import HistoryStore

    async def snapshot():
        store = await HistoryStore.open(db)
        try:
            history = [c.model_dump(mode="json") for c in await store.load_history(thread_key("t"))]
            turns = len(await store.list_turns(thread_key("t")))
            usage = len(await store.usage_rows())
            return history, turns, usage
        finally:
            await store.close()

    before = await snapshot()
    stand_in.faults.latency = 30
    count = len(stand_in.requests)
    proc = await run_cli(env, "chat", "--thread", "t", "--out", str(tmp_path / "o"),
                         "now", "in", "a", "storm", "--ar", "9:16", cwd=tmp_path)
    for _ in range(200):
        if len(stand_in.requests) > count:
            break
        await asyncio.sleep(0.05)
    assert len(stand_in.requests) > count, "the turn reached Gemini before the kill"
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert await snapshot() == before

    stand_in.faults.latency = 0
    out = await cli_turn(env, tmp_path, "t", "now at dawn")
    assert "image:" in out
    history, turns, _ = await snapshot()
    assert turns == 2 and len(history) == 4
