"""A 30-turn 4K Nano Banana Pro thread end to end at real sizes: the CLI, a fresh process
per turn (so every turn restores the thread from SQLite), against the stand-in in its own
process answering as the live API does (7.8 MB JPEGs, two thought images, ~1 MiB thought
signatures) and enforcing the 100 MB request limit. Halfway, the stand-in's clock jumps 49
hours: every file expires, and the thread must go on at the cost of uploads only.

With the default ``history_signatures`` (1), only the previous answer's two signatures go
back real (~2.8 MB of base64); older turns carry Google's dummy, which the stand-in takes.
Each turn's images go up in the background once it is stored, before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
TURNS = 30
JUMP_AT = 16
IMAGES_PER_TURN = 3  # the final image and two thought images
MB = 1_000_000
REAL_SIGNATURE_B64 = (1024 * 1024 + 2) // 3 * 4  # the stand-in's 1 MiB, as base64


@pytest.fixture
async def real_stand_in() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "offline_gemini", "--port", "0", "--real-sizes", "--admin",
        "--api-key", TEST_KEY, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        yield line.decode().strip()
    finally:
        proc.terminate()
        await proc.wait()


async def admin(url: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{url}/_admin/{path}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def turn(env: dict[str, str], cwd: Path, n: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "chat", "--thread", "poster", "--out",
        str(cwd / "out"), f"frame {n}, a little warmer", "--size", "4K", "--ar", "16:9",
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"turn {n}: {err.decode()[-2000:]}"
    return out.decode()


# ~80 s alone; on a machine shared with other work it takes several times as long.
@pytest.mark.timeout(900)
async def test_a_30_turn_4k_thread_at_real_sizes_with_a_49_hour_jump(real_stand_in, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_", "GOOGLE_", "IMAGEBOT_", "DATABASE_"))}
    env.update(GEMINI_API_KEY=TEST_KEY, GEMINI_BASE_URL=real_stand_in,
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", GEMINI_RETRY_ATTEMPTS="1",
               PYTHONPATH=str(ROOT))
    uploads = []
    for n in range(1, TURNS + 1):
        if n == JUMP_AT:
            await admin(real_stand_in, "POST", "clock", {"advance_hours": 49})
        out = await turn(env, tmp_path, n)
        assert "image:" in out and "(5504×3072, image/jpeg)" in out
        assert "note:" not in out, f"turn {n} left something out: {out}"
        stats = await admin(real_stand_in, "GET", "stats")
        uploads.append(stats["uploads"])
        sent = stats["last_generate"]
        assert sent["parts"] == 1 + 6 * (n - 1), "every earlier turn was sent, whole"
        assert sent["file_parts"] == IMAGES_PER_TURN * (n - 1) and sent["inline_data_bytes"] == 0
        assert sent["bytes"] - sent["signature_bytes"] < 64 * 1024, "a few hundred bytes an image"
        if n > 1:  # the previous answer's two real signatures, ~50 bytes per older one
            assert 2 * REAL_SIGNATURE_B64 <= sent["signature_bytes"] <= 2 * REAL_SIGNATURE_B64 \
                + 100 * (n - 2), f"turn {n}: {sent['signature_bytes']} bytes of signatures"
    # Each turn's three images went up after it was stored (in the background).
    before_jump = IMAGES_PER_TURN * (JUMP_AT - 1)
    assert uploads[:JUMP_AT - 1] == [IMAGES_PER_TURN * n for n in range(1, JUMP_AT)]
    assert uploads[JUMP_AT - 1] - uploads[JUMP_AT - 2] == before_jump + IMAGES_PER_TURN, \
        "the jump cost the expired files' uploads, once"
    assert uploads[-1] == 2 * before_jump + IMAGES_PER_TURN * (TURNS - JUMP_AT + 1)
    assert stats["generate_statuses"] == {"200": TURNS, "403": 1}, "one refusal at the jump"
    assert sent["bytes"] < 3 * MB, "turn 30: one answer's real signatures, 28 dummies"
    print(json.dumps({"turn_30_request": sent, "uploads": uploads}))
