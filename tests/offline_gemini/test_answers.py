"""Answers: determinism, interleaved steps, grounding and usage metadata."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from tests.offline_gemini.support import (
    FLASH,
    PRO,
    final_images,
    image_config,
    parts_of,
    prompt_with_images,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- determinism


async def test_identical_requests_give_identical_content(client: genai.Client) -> None:
    async def ask() -> types.GenerateContentResponse:
        return await client.aio.models.generate_content(
            model=PRO, contents=prompt_with_images("Blue teapot", (64, 48)), config=image_config("4:3", "1K")
        )

    first, second = await ask(), await ask()
    assert first.candidates and second.candidates
    assert first.candidates[0].model_dump() == second.candidates[0].model_dump()
    assert first.usage_metadata == second.usage_metadata
    assert first.response_id != second.response_id
    other = await client.aio.models.generate_content(model=PRO, contents="Green teapot")
    assert final_images(other)[0].inline_data != final_images(first)[0].inline_data


async def test_interleaved_recipe(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(model=FLASH, contents="An illustrated recipe for paella")
    parts = parts_of(response)
    kinds = ["image" if p.inline_data else "text" for p in parts]
    assert kinds in (["text", "image"] * 2, ["text", "image"] * 3)
    signed = [p.thought_signature is not None for p in parts]
    assert signed == [True, True] + [False, True] * (len(parts) // 2 - 1)
    only_images = await client.aio.models.generate_content(
        model=FLASH, contents="Paella step by step", config=types.GenerateContentConfig(response_modalities=["IMAGE"])
    )
    assert all(p.inline_data and p.thought_signature for p in parts_of(only_images))


# --------------------------------------------------------------------------- grounding, usage


async def test_grounding_metadata(client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
    response = await client.aio.models.generate_content(model=PRO, contents="Weather in Paris", config=config)
    assert response.candidates
    grounding = response.candidates[0].grounding_metadata
    assert grounding and grounding.search_entry_point and grounding.grounding_chunks
    assert "<style>" in (grounding.search_entry_point.rendered_content or "")
    assert len(grounding.grounding_chunks) == 3
    for chunk in grounding.grounding_chunks:
        assert chunk.web and (chunk.web.uri or "").startswith(
            "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
        )
    assert grounding.web_search_queries and grounding.grounding_supports
    flash = await client.aio.models.generate_content(model=FLASH, contents="Weather in Paris", config=config)
    assert flash.candidates and flash.candidates[0].grounding_metadata is None


async def test_usage_metadata(client: genai.Client) -> None:
    flash = await client.aio.models.generate_content(model=FLASH, contents=prompt_with_images("Cat", (64, 48)))
    usage = flash.usage_metadata
    assert usage and usage.prompt_token_count == 1 + 258
    text_tokens = len(flash.text or "") // 4
    assert usage.candidates_token_count == 1290 + text_tokens
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.thoughts_token_count is None
    details = {d.modality: d.token_count for d in usage.candidates_tokens_details or []}
    assert details == {"IMAGE": 1290, "TEXT": text_tokens}
    pro = await client.aio.models.generate_content(model=PRO, contents="Cat", config=image_config("1:1", "4K"))
    usage = pro.usage_metadata
    assert usage and usage.thoughts_token_count
    assert usage.candidates_token_count == 2000 + len(pro.text or "") // 4
    assert usage.total_token_count == (
        (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0) + usage.thoughts_token_count
    )
    assert pro.model_version == PRO
