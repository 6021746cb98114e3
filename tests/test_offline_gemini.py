"""Tests for bot.offline_gemini, driven by the real google-genai SDK over HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from bot.offline_gemini import (
    KNOWN_MODELS,
    OfflineGemini,
    PartKind,
    image_size_for,
    signature_slots,
    thought_signature_for,
)

FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
KEY = "offline-key"
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def image_part(size: tuple[int, int] = (64, 48)) -> types.Part:
    return types.Part.from_bytes(data=png_bytes(size), mime_type="image/png")


def prompt_with_images(text: str, *sizes: tuple[int, int]) -> list[types.PartUnion]:
    return [text, *(image_part(size) for size in sizes)]


def make_client(url: str, *, attempts: int = 1, key: str = KEY) -> genai.Client:
    retry = types.HttpRetryOptions(attempts=attempts, initial_delay=0.01, max_delay=0.02, jitter=0)
    options = types.HttpOptions(base_url=url, api_version="v1beta", retry_options=retry)
    return genai.Client(api_key=key, http_options=options)


def image_config(ratio: str | None = None, size: str | None = None, **extra: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        image_config=types.ImageConfig(aspect_ratio=ratio, image_size=size), **extra
    )


def pil(part: types.Part) -> Image.Image:
    assert part.inline_data is not None and part.inline_data.data is not None
    return Image.open(io.BytesIO(part.inline_data.data))


def parts_of(response: types.GenerateContentResponse) -> list[types.Part]:
    assert response.candidates and response.candidates[0].content
    return list(response.candidates[0].content.parts or [])


def final_images(response: types.GenerateContentResponse) -> list[types.Part]:
    return [p for p in parts_of(response) if p.inline_data and not p.thought]


@pytest.fixture
async def server() -> AsyncIterator[OfflineGemini]:
    async with OfflineGemini() as srv:
        yield srv


@pytest.fixture
async def client(server: OfflineGemini) -> AsyncIterator[genai.Client]:
    sdk = make_client(server.base_url)
    yield sdk
    await sdk.aio.aclose()


async def post_raw(
    url: str,
    body: dict[str, Any] | bytes,
    *,
    model: str = FLASH,
    method: str = "generateContent",
    key: str | None = KEY,
    query: str = "",
) -> tuple[int, str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"x-goog-api-key": key} if key else {})
    async with aiohttp.ClientSession() as session:
        target = f"{url}/v1beta/models/{model}:{method}{query}"
        async with session.post(target, data=data, headers=headers) as resp:
            text = await resp.text()
            payload = json.loads(text) if resp.content_type == "application/json" else None
            return resp.status, text, payload


def user_text(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("model", "ratio", "size", "expected"),
    [
        (FLASH, None, None, (1024, 1024)),
        (FLASH, "21:9", "4K", (1536, 672)),
        ("models/" + FLASH, "9:16", None, (768, 1344)),
        ("gemini-2.5-flash-image-preview", "3:4", None, (864, 1184)),
        (PRO, "2:3", None, (848, 1264)),
        (PRO, "16:9", "2K", (2752, 1536)),
        (PRO, "21:9", "4K", (6336, 2688)),
        (PRO, "4:5", "4K", (3712, 4608)),
    ],
)
def test_image_size_for_documented_tables(model: str, ratio: str | None, size: str | None, expected: tuple[int, int]) -> None:
    assert image_size_for(model, ratio, size) == expected


@pytest.mark.parametrize(("model", "ratio", "size"), [("nope", "1:1", None), (PRO, "7:3", None), (PRO, "1:1", "1k")])
def test_image_size_for_rejects_unknown_values(model: str, ratio: str, size: str | None) -> None:
    with pytest.raises(ValueError):
        image_size_for(model, ratio, size)


@pytest.mark.parametrize(
    ("model", "ratio", "size", "expected"),
    [
        (FLASH, "16:9", None, (1344, 768)),
        (FLASH, "2:3", None, (832, 1248)),
        (PRO, None, None, (1024, 1024)),
        (PRO, "3:2", "2K", (2528, 1696)),
        (PRO, "21:9", "4K", (6336, 2688)),
    ],
)
async def test_sdk_receives_exact_pixel_sizes(
    client: genai.Client, model: str, ratio: str | None, size: str | None, expected: tuple[int, int]
) -> None:
    response = await client.aio.models.generate_content(
        model=model, contents="A lighthouse at dusk", config=image_config(ratio, size)
    )
    [final] = final_images(response)
    image = pil(final)
    assert image.format == "PNG" and image.size == expected
    assert final.inline_data is not None and final.inline_data.mime_type == "image/png"
    for thought in [p for p in parts_of(response) if p.thought and p.inline_data]:
        assert pil(thought).size == (expected[0] // 2, expected[1] // 2)


async def test_missing_ratio_follows_first_input_image(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH, contents=prompt_with_images("Make it snow", (1600, 900))
    )
    assert pil(final_images(response)[0]).size == (1344, 768)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("model", "contents_images", "config", "message"),
    [
        (PRO, 0, image_config("7:3"), "Unsupported aspect ratio: 7:3"),
        (PRO, 0, image_config("1:1", "2k"), "Unsupported image size: 2k"),
        (FLASH, 0, image_config("1:1", "1K"), "Image size is not supported for model"),
        (FLASH, 4, None, "Too many input images: 4"),
        (PRO, 15, None, "Too many input images: 15"),
        (FLASH, 0, types.GenerateContentConfig(response_modalities=["TEXT"]),
         "does not support the requested response modalities"),
    ],
)
async def test_sdk_validation_errors(
    client: genai.Client, model: str, contents_images: int, config: types.GenerateContentConfig | None, message: str
) -> None:
    contents: list[Any] = ["Draw"] + [image_part((8, 8)) for _ in range(contents_images)]
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=model, contents=contents, config=config)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert message in (caught.value.message or "")


async def test_max_images_accepted(client: genai.Client) -> None:
    contents: list[Any] = ["Collage"] + [image_part((16, 16)) for _ in range(14)]
    response = await client.aio.models.generate_content(model=PRO, contents=contents)
    assert final_images(response)


async def test_unknown_model_is_404(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-9-ultra", contents="hi")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    assert caught.value.message == (
        "models/gemini-9-ultra is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods."
    )


async def test_wrong_and_missing_api_key(server: OfflineGemini) -> None:
    bad = make_client(server.base_url, key="wrong")
    with pytest.raises(errors.ClientError) as caught:
        await bad.aio.models.generate_content(model=FLASH, contents="hi")
    await bad.aio.aclose()
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    status, _, payload = await post_raw(server.base_url, user_text("hi"), key=None)
    assert status == 403 and payload["error"]["status"] == "PERMISSION_DENIED"
    assert payload["error"]["message"].startswith("Method doesn't allow unregistered callers")
    status, _, _ = await post_raw(server.base_url, user_text("hi"), key=None, query=f"?key={KEY}")
    assert status == 200


async def test_any_key_mode() -> None:
    async with OfflineGemini(api_key=None) as srv:
        assert (await post_raw(srv.base_url, user_text("hi"), key="whatever"))[0] == 200
        assert (await post_raw(srv.base_url, user_text("hi"), key=None))[0] == 403


def inline(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "model", "parts": [{"text": "x"}]}]}, "role 'user'"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
        ({"contents": [{"role": "user", "parts": [{}]}]}, "required oneof field 'data'"),
        ({"contents": [{"role": "user", "parts": [{"text": "x", **inline(png_bytes())}]}]},
         "oneof field 'data' is already set"),
        ({"contents": [{"role": "user", "parts": [inline(b"hello", "text/plain")]}]},
         "Unsupported MIME type: text/plain"),
        ({"contents": [{"role": "user", "parts": [inline(b"not a png")]}]},
         "Unable to process input image. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting"),
        ({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "a$b"}}]}]},
         "Base64 decoding failed"),
        ({**user_text("x"), "generationConfig": {"responseModalities": ["AUDIO", "IMAGE"]}},
         "Unsupported response modality: AUDIO"),
    ],
)
async def test_raw_validation_errors(server: OfflineGemini, body: dict[str, Any], message: str) -> None:
    status, _, payload = await post_raw(server.base_url, body)
    assert status == 400, payload
    assert payload["error"]["status"] == "INVALID_ARGUMENT" and message in payload["error"]["message"]


async def test_payload_limit(server: OfflineGemini) -> None:
    body = json.dumps(user_text("x" * (20 * 1024 * 1024))).encode()
    status, _, payload = await post_raw(server.base_url, body)
    assert status == 400
    assert payload["error"]["message"] == "Request payload size exceeds the limit: 20971520 bytes."


async def test_snake_case_and_standard_base64_accepted(server: OfflineGemini) -> None:
    data = base64.b64encode(png_bytes((30, 20))).decode().rstrip("=")
    body = {
        "contents": [{"parts": [{"text": "Edit this"}, {"inline_data": {"mime_type": "image/png", "data": data}}]}],
        "generation_config": {"response_modalities": ["Image"], "image_config": {"aspect_ratio": "3:2"}},
    }
    status, _, payload = await post_raw(server.base_url, body)
    assert status == 200, payload
    parts = payload["candidates"][0]["content"]["parts"]
    assert [list(p) for p in parts] == [["inlineData", "thoughtSignature"]]
    image = Image.open(io.BytesIO(base64.b64decode(parts[0]["inlineData"]["data"])))
    assert image.size == (1248, 832)
    camel = {
        "contents": [{"role": "user", "parts": [
            {"text": "Edit this"},
            {"inlineData": {"mimeType": "image/png",
                            "data": base64.urlsafe_b64encode(png_bytes((30, 20))).decode()}}]}],
        "generationConfig": {"responseModalities": ["Image"], "imageConfig": {"aspectRatio": "3:2"}},
    }
    _, _, again = await post_raw(server.base_url, camel)
    assert again["candidates"] == payload["candidates"]


# --------------------------------------------------------------------------- signatures


def test_signature_slots_follow_documented_rules() -> None:
    kinds: list[tuple[PartKind, bool]] = [
        ("text", True), ("image", True), ("text", False), ("image", False), ("text", False), ("image", False)
    ]
    assert signature_slots(kinds) == [2, 3, 5]
    assert signature_slots([("image", False), ("text", False)]) == [0]


async def first_turn(client: genai.Client, model: str = PRO) -> tuple[types.Content, types.Content]:
    user = types.Content(role="user", parts=[types.Part.from_text(text="A red fox")])
    response = await client.aio.models.generate_content(model=model, contents=[user])
    assert response.candidates and response.candidates[0].content
    return user, response.candidates[0].content


def follow_up(user: types.Content, model_turn: types.Content) -> list[types.Content]:
    return [user, model_turn, types.Content(role="user", parts=[types.Part.from_text(text="Now in snow")])]


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
    assert names == {f"models/{name}" for name in KNOWN_MODELS}


def test_image_generation_speed() -> None:
    from bot.offline_gemini import RenderJob, render_png

    job = RenderJob(6336, 2688, "OFFLINE PREVIEW", "info", "Prompt", "A cat " * 50, "footer", b"\1" * 32)
    started = time.perf_counter()
    png = render_png(job)
    assert time.perf_counter() - started < 1.0  # generous for slow CI; typically ~0.1 s
    assert Image.open(io.BytesIO(png)).size == (6336, 2688)


async def test_cli_prints_base_url() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.offline_gemini", "--port", "0", "--any-key",
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
