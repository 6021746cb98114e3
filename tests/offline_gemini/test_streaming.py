"""Streaming: chunk order and SSE framing."""

from __future__ import annotations

import pytest
from google import genai

from offline_gemini import (
    OfflineGemini,
)
from tests.offline_gemini.support import (
    PRO,
    parts_of,
    post_raw,
    user_text,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- streaming


async def test_stream_chunk_order(client: genai.Client) -> None:
    stream = await client.aio.models.generate_content_stream(model=PRO, contents="A castle")
    chunks = [chunk async for chunk in stream]
    parts = [part for chunk in chunks for part in parts_of(chunk)]
    kinds = [("image" if p.inline_data else "text", bool(p.thought)) for p in parts]
    assert kinds == [("text", True), ("image", True), ("image", True), ("text", False), ("image", False)]
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates] == [None] * 4 + ["STOP"]
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.thoughts_token_count


async def test_raw_sse_framing(server: OfflineGemini) -> None:
    status, text, _ = await post_raw(
        server.base_url, user_text("A castle"), model=PRO, method="streamGenerateContent", query="?alt=sse"
    )
    assert status == 200
    events = text.split("\r\n\r\n")
    assert events[-1] == "" and all(event.startswith("data: {") for event in events[:-1])
    assert len(events) - 1 == 5
    status, _, array = await post_raw(
        server.base_url, user_text("A castle"), model=PRO, method="streamGenerateContent"
    )
    assert status == 200 and isinstance(array, list) and len(array) == 5
