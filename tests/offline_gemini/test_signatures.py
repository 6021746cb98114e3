"""Thought signatures: where they go, strict checking, chats that round-trip them."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import (
    OfflineGemini,
    PartKind,
    signature_slots,
    thought_signature_for,
)
from tests.offline_gemini.support import (
    FLASH,
    PRO,
    final_images,
    first_turn,
    follow_up,
    make_client,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- signatures


def test_signature_slots_follow_documented_rules() -> None:
    kinds: list[tuple[PartKind, bool]] = [
        ("text", True), ("image", True), ("text", False), ("image", False), ("text", False), ("image", False)
    ]
    assert signature_slots(kinds) == [2, 3, 5]
    assert signature_slots([("image", False), ("text", False)]) == [0]


async def test_strict_signatures_roundtrip(client: genai.Client) -> None:
    user, model_turn = await first_turn(client)
    parts = model_turn.parts or []
    assert [bool(p.thought) for p in parts] == [True, True, True, False, False]
    assert [p.thought_signature is not None for p in parts] == [False, False, False, True, True]
    assert parts[3].thought_signature == thought_signature_for((parts[3].text or "").encode())
    ok = await client.aio.models.generate_content(model=PRO, contents=follow_up(user, model_turn))
    assert final_images(ok)

    stripped = model_turn.model_copy(deep=True)
    for part in stripped.parts or []:
        part.thought_signature = None
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=PRO, contents=follow_up(user, stripped))
    assert caught.value.message == "Text part is missing a thought_signature in content position 2, part position 4."

    (stripped.parts or [])[3].thought_signature = parts[3].thought_signature
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=PRO, contents=follow_up(user, stripped))
    assert caught.value.message == "Image part is missing a thought_signature in content position 2, part position 5."

    (stripped.parts or [])[4].thought_signature = b"sig1" + b"\0" * 32
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=PRO, contents=follow_up(user, stripped))
    assert caught.value.code == 400
    assert caught.value.message == "Corrupted thought signature in content position 2, part position 5."


async def test_non_strict_accepts_stripped_history() -> None:
    async with OfflineGemini(strict_signatures=False) as srv:
        sdk = make_client(srv.base_url)
        user, model_turn = await first_turn(sdk, FLASH)
        for part in model_turn.parts or []:
            part.thought_signature = None
        response = await sdk.aio.models.generate_content(model=FLASH, contents=follow_up(user, model_turn))
        await sdk.aio.aclose()
        assert final_images(response)


async def test_chat_roundtrips_signatures_unary_and_streamed(client: genai.Client, server: OfflineGemini) -> None:
    chat = client.aio.chats.create(model=PRO)
    await chat.send_message("A paper boat")
    await chat.send_message("Make it yellow")
    stream_chat = client.aio.chats.create(model=PRO)
    async for _ in await stream_chat.send_message_stream("A paper boat"):
        pass
    chunks = [chunk async for chunk in await stream_chat.send_message_stream("Make it yellow")]
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    history = server.requests[-1].body["contents"]
    assert len(history) == 1 + 5 + 1  # one model content per streamed chunk
    assert all(r.status == 200 for r in server.requests)
