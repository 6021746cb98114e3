"""Fault injection: HTTP errors, blocks, finish reasons, disconnects and latency."""

from __future__ import annotations

import time

import aiohttp
import pytest
from google import genai
from google.genai import errors

from offline_gemini import (
    OfflineGemini,
    thought_signature_for,
)
from tests.offline_gemini.support import (
    FLASH,
    PRO,
    final_images,
    image_config,
    make_client,
    parts_of,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- faults


async def test_status_faults_then_success_with_sdk_retries(server: OfflineGemini) -> None:
    server.faults.queue_status(429, 503, 500)
    sdk = make_client(server.base_url, attempts=4)
    response = await sdk.aio.models.generate_content(model=FLASH, contents="Retry me")
    await sdk.aio.aclose()
    assert final_images(response)
    assert [r.status for r in server.requests] == [429, 503, 500, 200]


async def test_429_error_shape(client: genai.Client, server: OfflineGemini) -> None:
    server.faults.queue_status(429, retry_delay="7s")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH, contents="hi")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    details = caught.value.details["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    server.faults.queue_status(408, 503)
    for code, status in ((408, "DEADLINE_EXCEEDED"), (503, "UNAVAILABLE")):
        with pytest.raises(errors.APIError) as failed:
            await client.aio.models.generate_content(model=FLASH, contents="hi")
        assert (failed.value.code, failed.value.status) == (code, status)


async def test_block_fault(client: genai.Client, server: OfflineGemini) -> None:
    server.faults.queue_block("PROHIBITED_CONTENT")
    response = await client.aio.models.generate_content(model=PRO, contents="hi")
    assert not response.candidates
    assert response.prompt_feedback and response.prompt_feedback.block_reason == "PROHIBITED_CONTENT"
    assert response.prompt_feedback.safety_ratings


@pytest.mark.parametrize("reason", ["IMAGE_SAFETY", "NO_IMAGE", "RECITATION", "IMAGE_OTHER"])
async def test_finish_fault(client: genai.Client, server: OfflineGemini, reason: str) -> None:
    server.faults.queue_finish(reason)
    server.faults.queue_finish(reason, with_text=True)
    empty = await client.aio.models.generate_content(model=PRO, contents="hi")
    assert empty.candidates and empty.candidates[0].finish_reason == reason
    assert empty.candidates[0].content is None
    texty = await client.aio.models.generate_content(model=PRO, contents="hi")
    assert texty.candidates and texty.candidates[0].finish_reason == reason
    assert texty.text and not final_images(texty)


async def test_text_only_fault_and_fifo_skips_invalid_requests(client: genai.Client, server: OfflineGemini) -> None:
    server.faults.queue_text_only("Words only.")
    with pytest.raises(errors.ClientError):
        await client.aio.models.generate_content(model=FLASH, contents="hi", config=image_config("7:3"))
    response = await client.aio.models.generate_content(model=FLASH, contents="hi")
    assert response.text == "Words only." and not final_images(response)
    assert parts_of(response)[0].thought_signature == thought_signature_for(b"Words only.")
    assert len(server.faults) == 0


async def test_disconnect_fault_and_latency(client: genai.Client, server: OfflineGemini) -> None:
    server.faults.queue_disconnect()
    with pytest.raises(aiohttp.ClientError):
        await client.aio.models.generate_content(model=FLASH, contents="hi")
    assert server.requests[-1].status == 0
    server.faults.latency = 0.2
    started = time.perf_counter()
    await client.aio.models.generate_content(model=FLASH, contents="hi")
    assert time.perf_counter() - started >= 0.2
    server.reset()
    assert server.requests == [] and server.faults.latency == 0 and len(server.faults) == 0
