"""Real sizes: the live API's formats, byte sizes and signature lengths, behind a switch."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import errors
from PIL import Image

from offline_gemini import OfflineGemini, render_cached, thought_signature_for
from offline_gemini.signatures import REAL_SIGNATURE_BYTES, SMALL_SIGNATURE_BYTES
from tests.offline_gemini.support import (
    FLASH,
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

MB = 1_000_000


@pytest.fixture
async def real() -> AsyncIterator[tuple[OfflineGemini, genai.Client]]:
    async with OfflineGemini(real_sizes=True) as srv:
        sdk = make_client(srv.base_url)
        yield srv, sdk
        await sdk.aio.aclose()


@pytest.mark.parametrize(
    ("size", "pixels", "megabytes"),
    [("1K", (1376, 768), 1.35), ("2K", (2752, 1536), 5.6), ("4K", (5504, 3072), 7.8)],
)
async def test_pro_answers_baseline_jpeg_of_real_bytes(
    real: tuple[OfflineGemini, genai.Client], size: str, pixels: tuple[int, int], megabytes: float
) -> None:
    _, client = real
    render_cached.cache_clear()
    started = time.perf_counter()
    response = await client.aio.models.generate_content(
        model=PRO, contents="A harbour at dawn", config=image_config("16:9", size)
    )
    elapsed = time.perf_counter() - started
    parts = parts_of(response)
    assert [(p.thought, p.inline_data is not None) for p in parts] == [
        (True, False), (True, True), (True, True), (None, False), (None, True)
    ]
    [final] = final_images(response)
    assert final.inline_data is not None and final.inline_data.mime_type == "image/jpeg"
    data = final.inline_data.data or b""
    image = pil(final)
    assert image.format == "JPEG" and image.size == pixels and not image.info.get("progressive")
    assert 0.75 * megabytes * MB <= len(data) <= 1.25 * megabytes * MB, len(data)
    for thought in parts[1:3]:
        assert thought.thought_signature is None
        assert thought.inline_data is not None and thought.inline_data.mime_type == "image/jpeg"
        assert pil(thought).size == (pixels[0] // 2, pixels[1] // 2)
    assert final.thought_signature == thought_signature_for(data, REAL_SIGNATURE_BYTES)
    assert elapsed < 10, f"a real-size {size} answer took {elapsed:.1f} s"


async def test_flash_answers_png_of_real_bytes(real: tuple[OfflineGemini, genai.Client]) -> None:
    _, client = real
    response = await client.aio.models.generate_content(model=FLASH, contents="A kite")
    [final] = final_images(response)
    assert final.inline_data is not None and final.inline_data.mime_type == "image/png"
    image = pil(final)
    assert image.format == "PNG" and image.size == (1024, 1024) and image.mode == "RGB"
    assert 0.75 * 1.5 * MB <= len(final.inline_data.data or b"") <= 1.25 * 1.5 * MB


async def test_real_signatures_roundtrip_and_are_checked_whole(
    real: tuple[OfflineGemini, genai.Client],
) -> None:
    _, client = real
    user, model_turn = await first_turn(client)
    signed = [p for p in model_turn.parts or [] if p.thought_signature]
    assert [len(p.thought_signature or b"") for p in signed] == [REAL_SIGNATURE_BYTES] * 2
    assert final_images(await client.aio.models.generate_content(
        model=PRO, contents=follow_up(user, model_turn)))
    image_part = (model_turn.parts or [])[4]
    original = image_part.thought_signature or b""
    for broken in (original[:-1] + bytes([original[-1] ^ 1]),  # the filler's last byte
                   original[:SMALL_SIGNATURE_BYTES],  # only the HMAC
                   original + b"\0"):
        image_part.thought_signature = broken
        with pytest.raises(errors.ClientError) as caught:
            await client.aio.models.generate_content(model=PRO, contents=follow_up(user, model_turn))
        assert caught.value.message == (
            "Corrupted thought signature in content position 2, part position 5."
        )


async def test_sizes_are_off_by_default_and_signature_length_is_a_setting() -> None:
    async with OfflineGemini(signature_bytes=4096) as srv:
        client = make_client(srv.base_url)
        response = await client.aio.models.generate_content(model=PRO, contents="A kite")
        await client.aio.aclose()
    [final] = final_images(response)
    assert final.inline_data is not None and final.inline_data.mime_type == "image/png"
    assert Image.open(io.BytesIO(final.inline_data.data or b"")).mode == "P"
    assert len(final.inline_data.data or b"") < 200_000
    assert len(final.thought_signature or b"") == 4096
    with pytest.raises(ValueError):
        OfflineGemini(signature_bytes=8)


def test_signature_length_is_bound_into_the_mac() -> None:
    small = thought_signature_for(b"payload")
    big = thought_signature_for(b"payload", 1000)
    assert len(small) == SMALL_SIGNATURE_BYTES and len(big) == 1000
    assert small.startswith(b"sig1") and big.startswith(b"sig1")
    assert big[:SMALL_SIGNATURE_BYTES] != small
    assert thought_signature_for(b"other", 1000)[SMALL_SIGNATURE_BYTES:] != big[SMALL_SIGNATURE_BYTES:]
