"""Server plumbing: recorded requests, ListModels, rendering speed and the CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from google import genai
from PIL import Image

from offline_gemini import (
    KNOWN_MODELS,
    OfflineGemini,
    RenderJob,
    render_png,
)
from offline_gemini.models import IMAGEN_MODELS
from tests.offline_gemini.support import (
    FLASH,
    KEY,
    PRO,
    post_raw,
    user_text,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- server plumbing


async def test_recorded_requests(client: genai.Client, server: OfflineGemini) -> None:
    await client.aio.models.generate_content(model="models/" + FLASH, contents="Record me")
    [record] = server.requests
    assert record.model == FLASH and record.method == "generateContent" and record.status == 200
    assert record.path == f"/v1beta/models/{FLASH}:generateContent"
    assert record.headers["x-goog-api-key"] == KEY
    assert record.body["contents"][0]["parts"] == [{"text": "Record me"}]


async def test_list_models(server: OfflineGemini) -> None:
    async with aiohttp.ClientSession(headers={"x-goog-api-key": KEY}) as session:
        async with session.get(f"{server.base_url}/v1beta/models") as resp:
            names = {m["name"] for m in (await resp.json())["models"]}
    assert names == {f"models/{name}" for name in [*KNOWN_MODELS, *IMAGEN_MODELS]}


def test_image_generation_speed() -> None:
    job = RenderJob(6336, 2688, "OFFLINE PREVIEW", "info", "Prompt", "A cat " * 50, "footer", b"\1" * 32)
    started = time.perf_counter()
    png = render_png(job)
    assert time.perf_counter() - started < 1.0  # generous for slow CI; typically ~0.1 s
    assert Image.open(io.BytesIO(png)).size == (6336, 2688)


async def test_cli_prints_base_url() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "offline_gemini", "--port", "0", "--any-key",
        cwd=REPO, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        status, _, _ = await post_raw(url, user_text("hi"), key="anything")
        assert status == 200
    finally:
        proc.terminate()
        await proc.wait()


async def test_cli_switches_reach_the_server() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "offline_gemini", "--port", "0", "--real-sizes",
        "--signature-bytes", "4096", "--trailing-signature", "--admin", "--keep-requests", "1",
        cwd=REPO, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        status, text, _ = await post_raw(url, user_text("hi"), model=PRO,
                                         method="streamGenerateContent", query="?alt=sse")
        async with aiohttp.ClientSession() as http, http.get(f"{url}/_admin/stats") as resp:
            stats = await resp.json()
    finally:
        proc.terminate()
        await proc.wait()
    assert status == 200
    last = json.loads(text.split("\r\n\r\n")[-2].removeprefix("data: "))
    part = last["candidates"][0]["content"]["parts"][0]
    assert part["text"] == "" and len(base64.b64decode(part["thoughtSignature"])) == 4096
    assert '"mimeType": "image/jpeg"' in text
    assert stats["requests"] == 2 and stats["last_generate"]["parts"] == 1


def test_the_package_imports_nothing_from_the_bot() -> None:
    code = ("import sys, offline_gemini, offline_gemini.__main__; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'bot', 'adapters'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
