"""Helpers for the stand-in's tests: a real google-genai client, raw HTTP, small images."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import aiohttp
from google import genai
from google.genai import types
from PIL import Image

FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
KEY = "offline-key"


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


def inline(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


async def first_turn(client: genai.Client, model: str = PRO) -> tuple[types.Content, types.Content]:
    user = types.Content(role="user", parts=[types.Part.from_text(text="A red fox")])
    response = await client.aio.models.generate_content(model=model, contents=[user])
    assert response.candidates and response.candidates[0].content
    return user, response.candidates[0].content


def follow_up(user: types.Content, model_turn: types.Content) -> list[types.Content]:
    return [user, model_turn, types.Content(role="user", parts=[types.Part.from_text(text="Now in snow")])]
