"""Streaming like the live API: chunk order, where the signature and metadata arrive,
the gap between chunks, and SSE framing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import OfflineGemini, thought_signature_for
from tests.offline_gemini.support import (
    FLASH,
    PRO,
    make_client,
    parts_of,
    post_raw,
    user_text,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def kind(part: types.Part) -> tuple[str, bool, bool]:
    """(text|image, thought, signed)"""
    return ("image" if part.inline_data else "text", bool(part.thought), part.thought_signature is not None)


async def collect(client: genai.Client, model: str, contents: str, **config: object) -> list[
        types.GenerateContentResponse]:
    cfg = types.GenerateContentConfig(**config) if config else None  # type: ignore[arg-type]
    stream = await client.aio.models.generate_content_stream(model=model, contents=contents, config=cfg)
    return [chunk async for chunk in stream]


@pytest.fixture
async def trailing() -> AsyncIterator[tuple[OfflineGemini, genai.Client]]:
    async with OfflineGemini(trailing_signature=True) as srv:
        sdk = make_client(srv.base_url)
        yield srv, sdk
        await sdk.aio.aclose()


async def test_stream_chunk_order(client: genai.Client) -> None:
    chunks = await collect(client, PRO, "A castle")
    assert [len(parts_of(c)) for c in chunks] == [1] * 5, "one part per chunk"
    parts = [part for chunk in chunks for part in parts_of(chunk)]
    assert [kind(p) for p in parts] == [
        ("text", True, False), ("image", True, False), ("image", True, False),
        ("text", False, True), ("image", False, True),
    ]
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates] == [None] * 4 + ["STOP"]
    assert [c.usage_metadata is not None for c in chunks] == [False] * 4 + [True]
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.thoughts_token_count
    flash = await collect(client, FLASH, "A castle")
    assert [kind(p) for c in flash for p in parts_of(c)] == [("text", False, True), ("image", False, True)]


async def test_grounding_arrives_on_the_last_chunk(client: genai.Client) -> None:
    chunks = await collect(client, PRO, "Weather in Paris", tools=[types.Tool(google_search=types.GoogleSearch())])
    grounded = [bool(c.candidates and c.candidates[0].grounding_metadata) for c in chunks]
    assert grounded == [False] * (len(chunks) - 1) + [True]


async def test_trailing_signature_chunks(trailing: tuple[OfflineGemini, genai.Client]) -> None:
    _, client = trailing
    chunks = await collect(client, PRO, "A castle")
    parts = [part for chunk in chunks for part in parts_of(chunk)]
    assert [kind(p) for p in parts] == [
        ("text", True, False), ("image", True, False), ("image", True, False),
        ("text", False, True), ("image", False, False), ("text", False, True),
    ]
    image, carrier = parts[4], parts[5]
    assert carrier.text == "" and image.inline_data and image.inline_data.data
    assert carrier.thought_signature == thought_signature_for(image.inline_data.data)
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata and chunks[-2].candidates and chunks[-2].candidates[0].finish_reason is None
    image_only = await collect(client, PRO, "A castle", response_modalities=["IMAGE"])
    assert [kind(p) for c in image_only for p in parts_of(c)][-2:] == [("image", False, False), ("text", False, True)]


async def test_strict_validator_accepts_exactly_the_trailing_shape(
    trailing: tuple[OfflineGemini, genai.Client],
) -> None:
    srv, client = trailing
    chat = client.aio.chats.create(model=PRO)
    async for _ in await chat.send_message_stream("A paper boat"):
        pass
    async for _ in await chat.send_message_stream("Make it yellow"):
        pass
    assert [r.status for r in srv.requests] == [200, 200]
    assert len(srv.requests[-1].body["contents"]) == 1 + 6 + 1, "one model content per chunk"
    history = chat.get_history()
    user, model_turn = history[0], history[1:7]
    ask = types.Content(role="user", parts=[types.Part.from_text(text="Now at night")])

    async def send(turn: list[types.Content]) -> None:
        await client.aio.models.generate_content(model=PRO, contents=[user, *turn, ask])

    with pytest.raises(errors.ClientError) as caught:
        await send(model_turn[:5])  # the signed empty text left out
    assert caught.value.message == "Image part is missing a thought_signature in content position 6, part position 1."
    swapped = [*model_turn[:4], model_turn[5], model_turn[4]]  # carrier before the image
    with pytest.raises(errors.ClientError) as caught:
        await send(swapped)
    assert "Image part is missing a thought_signature" in (caught.value.message or "")
    forged = [c.model_copy(deep=True) for c in model_turn]
    (forged[5].parts or [])[0].thought_signature = thought_signature_for(b"another image")
    with pytest.raises(errors.ClientError) as caught:
        await send(forged)
    assert caught.value.message == "Corrupted thought signature in content position 7, part position 1."
    await send(model_turn)


async def test_stream_gap_spaces_chunks() -> None:
    async with OfflineGemini(stream_gap=0.15) as srv:
        client = make_client(srv.base_url)
        arrivals: list[float] = []
        async for _ in await client.aio.models.generate_content_stream(model=PRO, contents="A castle"):
            arrivals.append(time.perf_counter())
        await client.aio.aclose()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(gaps) == 4 and min(gaps) >= 0.1, gaps


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
