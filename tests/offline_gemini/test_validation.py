"""Request validation, checked with the SDK and with raw HTTP bodies."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from offline_gemini import (
    OfflineGemini,
)
from tests.offline_gemini.support import (
    FLASH,
    KEY,
    PRO,
    final_images,
    image_config,
    image_part,
    inline,
    make_client,
    png_bytes,
    post_raw,
    user_text,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


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
    """100 MB inline since January 2026: 25 MB passes, just over 100 MB does not."""
    png = png_bytes((2, 2))
    padding = {"text": "x" * (25 * 1024 * 1024)}
    body = {"contents": [{"role": "user", "parts": [padding, inline(png)]}]}
    status, _, payload = await post_raw(server.base_url, body)
    assert status == 200, payload
    body = json.dumps(user_text("x" * (100 * 1024 * 1024))).encode()
    status, _, payload = await post_raw(server.base_url, body)
    assert status == 400
    assert payload["error"]["message"] == "Request payload size exceeds the limit: 104857600 bytes."
    assert server.requests[-1].body is None, "an oversized body is refused before parsing"


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
