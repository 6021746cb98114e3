"""Stock frames (--stock-frames): one drawn frame per size reused for every request, each
answer still its own bytes (a comment names the request), of the sizes it would have."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import AsyncIterator

import pytest
from google import genai
from PIL import Image

from offline_gemini import OfflineGemini, RenderJob, render_cached
from offline_gemini.__main__ import _parser
from offline_gemini.render import render_image, render_stock
from tests.offline_gemini.support import (
    PRO,
    final_images,
    first_turn,
    follow_up,
    image_config,
    make_client,
    parts_of,
    pil,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def job(prompt: str, **changes: object) -> RenderJob:
    base = RenderJob(width=1024, height=1024, title="OFFLINE PREVIEW", info="pro · 1:1",
                     heading="Prompt", body=prompt, footer="request 1",
                     color_seed=hashlib.sha256(prompt.encode()).digest())
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mime", "noise", "comment"),
                         [("image/png", 0, "Comment"), ("image/jpeg", 24, "comment")])
def test_stock_frames_are_drawn_once_and_each_answer_is_its_own(
        mime: str, noise: int, comment: str) -> None:
    render_cached.cache_clear()
    first = render_stock(job("a red kite", mime=mime, noise=noise))
    drawn = render_cached.cache_info().misses
    second = render_stock(job("a blue boat", mime=mime, noise=noise))
    assert render_cached.cache_info().misses == drawn  # the second one drew nothing
    assert first != second
    images = [Image.open(io.BytesIO(data)) for data in (first, second)]
    assert all(i.size == (1024, 1024) and i.format == mime.split("/")[1].upper()
               for i in images)
    assert images[0].tobytes() == images[1].tobytes()
    assert all("offline-gemini stock frame" in str(i.info[comment]) for i in images)
    # Real sizes (the texture) keep their bytes; small previews stay small.
    drawn_bytes = len(render_image(job("a red kite", mime=mime, noise=noise)))
    low, high = (0.9, 1.1) if noise else (0.5, 2.0)
    assert low * drawn_bytes <= len(first) <= high * drawn_bytes, (len(first), drawn_bytes)


@pytest.fixture
async def client() -> AsyncIterator[genai.Client]:
    async with OfflineGemini(stock_frames=True) as server:
        sdk = make_client(server.base_url)
        yield sdk
        await sdk.aio.aclose()


async def test_a_stock_frame_thread_keeps_valid_signatures(client: genai.Client) -> None:
    user, model_turn = await first_turn(client)
    follow = await client.aio.models.generate_content(
        model=PRO, contents=[*follow_up(user, model_turn)], config=image_config("16:9", "1K"))
    [final] = final_images(follow)
    assert pil(final).size == (1376, 768)
    assert "offline-gemini stock frame" in str(pil(final).info.get("Comment"))
    assert any(p.thought for p in parts_of(follow))


def test_the_command_line_and_environment_switch_it_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parser().parse_args(["--stock-frames"]).stock_frames
    assert not _parser().parse_args([]).stock_frames
    monkeypatch.setenv("OFFLINE_GEMINI_STOCK_FRAMES", "1")
    assert _parser().parse_args([]).stock_frames
