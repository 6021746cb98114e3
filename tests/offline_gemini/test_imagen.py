"""Imagen 4's ``:predict``, over raw HTTP: google-genai 3.6 refuses ``generate_images``
outside Vertex mode ("only supported in Gemini Enterprise Agent Platform mode"), so
the wire shape here follows the Imagen REST documentation."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from offline_gemini import OfflineGemini
from tests.offline_gemini.support import post_raw

GENERATE, ULTRA, FAST = "imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001", "imagen-4.0-fast-generate-001"


def predict_body(prompt: str = "A robot holding a red skateboard", **parameters: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": parameters}


@pytest.mark.parametrize(
    ("model", "parameters", "count", "size", "mime"),
    [
        (GENERATE, {"sampleCount": 2, "aspectRatio": "16:9"}, 2, (1408, 768), "image/png"),
        (GENERATE, {}, 4, (1024, 1024), "image/png"),
        (ULTRA, {"sampleCount": 1, "aspectRatio": "3:4", "sampleImageSize": "2K"}, 1, (1792, 2560), "image/png"),
        (FAST, {"sampleCount": 1, "aspectRatio": "9:16", "outputOptions": {"mimeType": "image/jpeg"}},
         1, (768, 1408), "image/jpeg"),
    ],
)
async def test_predictions(server: OfflineGemini, model: str, parameters: dict[str, Any], count: int,
                           size: tuple[int, int], mime: str) -> None:
    status, _, payload = await post_raw(server.base_url, predict_body(**parameters), model=model, method="predict")
    assert status == 200, payload
    predictions = payload["predictions"]
    assert len(predictions) == count and all(set(p) == {"bytesBase64Encoded", "mimeType"} for p in predictions)
    images = [Image.open(io.BytesIO(base64.b64decode(p["bytesBase64Encoded"]))) for p in predictions]
    assert {(i.size, i.get_format_mimetype()) for i in images} == {(size, mime)}
    assert len({p["bytesBase64Encoded"] for p in predictions}) == count, "samples differ"
    assert server.requests[-1].model == model and server.requests[-1].method == "predict"


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (ULTRA, predict_body(sampleCount=2), "sampleCount must be between 1 and 1"),
        (GENERATE, predict_body(sampleCount=5), "sampleCount must be between 1 and 4"),
        (GENERATE, predict_body(aspectRatio="2:3"), "Unsupported aspect ratio: 2:3"),
        (FAST, predict_body(sampleImageSize="2K"), "Unsupported sampleImageSize: 2K"),
        (GENERATE, predict_body(sampleImageSize="4K"), "Unsupported sampleImageSize: 4K"),
        (GENERATE, {"instances": [], "parameters": {}}, "exactly one instance is required"),
        (GENERATE, predict_body(prompt=""), "prompt is required"),
    ],
)
async def test_predict_validation(server: OfflineGemini, model: str, body: dict[str, Any], message: str) -> None:
    status, _, payload = await post_raw(server.base_url, body, model=model, method="predict")
    assert status == 400 and payload["error"]["status"] == "INVALID_ARGUMENT"
    assert message in payload["error"]["message"]


async def test_predict_unknown_model_and_key(server: OfflineGemini) -> None:
    status, _, payload = await post_raw(server.base_url, predict_body(), model="imagen-9", method="predict")
    assert status == 404 and payload["error"]["status"] == "NOT_FOUND"
    status, _, _ = await post_raw(server.base_url, predict_body(), model=GENERATE, method="predict", key=None)
    assert status == 403
    status, _, _ = await post_raw(server.base_url, {"contents": [{"parts": [{"text": "x"}]}]}, model=GENERATE)
    assert status == 404, "Imagen models do not generateContent"
