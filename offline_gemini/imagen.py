"""Imagen 4's ``:predict``: validating ``instances``/``parameters`` and answering
``predictions`` of rendered frames."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from offline_gemini.models import IMAGEN_PIXELS, IMAGEN_RATIOS, ImagenSpec
from offline_gemini.render import RenderJob, render_frame, render_stock
from offline_gemini.wire import b64, camelize_keys, invalid

_PERSON_GENERATION = ("dont_allow", "allow_adult", "allow_all")
_OUTPUT_MIMES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class ImagenRequest:
    """A validated ``:predict`` request."""

    prompt: str
    samples: int
    ratio: str
    size: str
    mime: str


def parse_predict(body: Any, spec: ImagenSpec) -> ImagenRequest:
    """Validate a ``:predict`` body for ``spec``. Raises ApiError."""
    body = camelize_keys(body) if isinstance(body, dict) else None
    if body is None:
        raise invalid("Invalid JSON payload received. Expected a JSON object.")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise invalid("* PredictRequest.instances: exactly one instance is required\n")
    prompt = instances[0].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("* PredictRequest.instances[0].prompt: prompt is required\n")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise invalid("Invalid JSON payload received. 'parameters' must be an object.")
    return ImagenRequest(prompt, _samples(params, spec), _ratio(params), _size(params, spec),
                         _mime(params))


def _samples(params: dict[str, Any], spec: ImagenSpec) -> int:
    count = params.get("sampleCount", spec.max_samples)
    if not isinstance(count, int) or not 1 <= count <= spec.max_samples:
        raise invalid(f"sampleCount must be between 1 and {spec.max_samples} for model "
                      f"{spec.name}; got {count}.")
    person = params.get("personGeneration")
    if person is not None and str(person).lower() not in _PERSON_GENERATION:
        raise invalid(f"Unsupported personGeneration: {person}.")
    return count


def _ratio(params: dict[str, Any]) -> str:
    ratio = params.get("aspectRatio", "1:1")
    if ratio not in IMAGEN_RATIOS:
        raise invalid(f"Unsupported aspect ratio: {ratio}. Supported values are: "
                      f"{', '.join(IMAGEN_RATIOS)}.")
    return str(ratio)


def _size(params: dict[str, Any], spec: ImagenSpec) -> str:
    size = params.get("sampleImageSize", "1K")
    if size not in spec.sizes:
        raise invalid(f"Unsupported sampleImageSize: {size} for model {spec.name}. Supported "
                      f"values: {', '.join(spec.sizes)}.")
    return str(size)


def _mime(params: dict[str, Any]) -> str:
    options = params.get("outputOptions") or {}
    mime = options.get("mimeType", "image/png") if isinstance(options, dict) else None
    if mime not in _OUTPUT_MIMES:
        raise invalid(f"Unsupported output mime type: {mime}. Use image/png or image/jpeg.")
    return str(mime)


async def predict(req: ImagenRequest, spec: ImagenSpec, banner: str, *,
                  stock_frames: bool = False) -> dict[str, Any]:
    """``{"predictions": [{"bytesBase64Encoded", "mimeType"}, ...]}`` for a request."""
    width, height = IMAGEN_PIXELS[req.size][req.ratio]
    jobs = [
        RenderJob(
            width=width, height=height, title=banner,
            info=f"{spec.name} · {req.ratio} · {req.size} · {width}x{height}",
            heading=f"Imagen sample {k} of {req.samples}", body=req.prompt[:4000],
            footer="offline Imagen preview", mime=req.mime,
            color_seed=hashlib.sha256(req.prompt.encode("utf-8") + bytes([k])).digest(),
        )
        for k in range(1, req.samples + 1)
    ]
    render = render_stock if stock_frames else render_frame
    images = await asyncio.gather(*(asyncio.to_thread(render, job) for job in jobs))
    return {"predictions": [{"bytesBase64Encoded": b64(data), "mimeType": req.mime}
                            for data in images]}
