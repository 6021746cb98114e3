"""Offline stand-in for the Gemini REST API, for demos and tests without network.

`OfflineGemini` is an aiohttp server that speaks the REST protocol google-genai 3.x
uses for image models:

* ``POST /{v1,v1beta}/models/{model}:generateContent``
* ``POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse`` (one
  ``data: {json}\\r\\n\\r\\n`` event per part; without ``alt=sse`` a JSON array)
* ``GET /{v1,v1beta}/models`` and ``GET /{v1,v1beta}/models/{model}`` (ListModels)

It validates requests the way the real API does (API key, model, aspect ratio, image
size, input-image limits, MIME types, payload size, thought signatures) and answers
with deterministic preview images: a PNG of exactly the documented pixel size that
shows the banner, model, ratio/size, the prompt and thumbnails of the input images.

Behaviour worth knowing:

* Everything in an answer except ``responseId`` is a pure function of the request
  (model, contents, config, tools), so identical requests give identical bytes.
* Without ``imageConfig.aspectRatio`` the output follows the first input image of the
  last user turn (closest supported ratio), else 1:1, as the documentation says.
  `image_size_for` itself maps a missing ratio to 1:1.
* Thought signatures are ``b"sig1" + HMAC-SHA256(secret, sha256(part content))``,
  so they can be verified without server state. Rules for where they go are in
  `signature_slots`; consecutive ``model`` contents are treated as one turn (a
  streamed chat stores one content per chunk). Google's documented dummy values
  ``skip_thought_signature_validator`` and ``context_engineering_is_the_way_to_go``
  are accepted in place of a signature.
* Queued faults are FIFO. Transport faults (HTTP status, disconnect) hit the next
  generate request before validation; answer faults (block, finish reason, text
  only) hit the next generate request that passes validation.
* Images are PNG in palette mode (256 colours) so that even 4K frames encode fast.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import colorsys
import contextlib
import functools
import hashlib
import hmac
import html
import io
import json
import logging
import math
import re
import secrets
import signal
import sys
import textwrap
import urllib.parse
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = [
    "ASPECT_RATIOS",
    "IMAGE_SIZES",
    "KNOWN_MODELS",
    "MAX_REQUEST_BYTES",
    "ApiError",
    "Faults",
    "ModelSpec",
    "OfflineGemini",
    "ParsedRequest",
    "PartKind",
    "RecordedRequest",
    "RenderJob",
    "camelize_keys",
    "decode_base64",
    "image_size_for",
    "load_json",
    "main",
    "parse_request",
    "render_png",
    "resolve_model",
    "signature_slots",
    "thought_signature_for",
]

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- models

ASPECT_RATIOS: tuple[str, ...] = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)
IMAGE_SIZES: tuple[str, ...] = ("1K", "2K", "4K")
MAX_REQUEST_BYTES = 20 * 1024 * 1024

_FLASH_PIXELS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}
_PRO_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
_PRO_2K: dict[str, tuple[int, int]] = {
    "1:1": (2048, 2048), "2:3": (1696, 2528), "3:2": (2528, 1696), "3:4": (1792, 2400),
    "4:3": (2400, 1792), "4:5": (1856, 2304), "5:4": (2304, 1856), "9:16": (1536, 2752),
    "16:9": (2752, 1536), "21:9": (3168, 1344),
}
_PRO_4K: dict[str, tuple[int, int]] = {
    "1:1": (4096, 4096), "2:3": (3392, 5056), "3:2": (5056, 3392), "3:4": (3584, 4800),
    "4:3": (4800, 3584), "4:5": (3712, 4608), "5:4": (4608, 3712), "9:16": (3072, 5504),
    "16:9": (5504, 3072), "21:9": (6336, 2688),
}


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What the stand-in knows about one image model."""

    name: str
    pixels: Mapping[str, Mapping[str, tuple[int, int]]]  # size label -> ratio -> (w, h)
    image_tokens: Mapping[str, int]  # size label -> output tokens per image
    max_input_images: int
    thinking: bool
    search: bool

    @property
    def has_sizes(self) -> bool:
        """True when the model accepts ``imageConfig.imageSize``."""
        return len(self.pixels) > 1


_FLASH = ModelSpec(
    name="gemini-2.5-flash-image",
    pixels={"1K": _FLASH_PIXELS},
    image_tokens={"1K": 1290},
    max_input_images=3,
    thinking=False,
    search=False,
)
_PRO = ModelSpec(
    name="gemini-3-pro-image-preview",
    pixels={"1K": _PRO_1K, "2K": _PRO_2K, "4K": _PRO_4K},
    image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
    max_input_images=14,
    thinking=True,
    search=True,
)
KNOWN_MODELS: dict[str, ModelSpec] = {
    "gemini-2.5-flash-image": _FLASH,
    "gemini-2.5-flash-image-preview": _FLASH,
    "gemini-3-pro-image-preview": _PRO,
}


def _model_id(model: str) -> str:
    """Strip any leading ``models/`` from a model name."""
    while model.startswith("models/"):
        model = model[len("models/"):]
    return model


def resolve_model(model: str) -> ModelSpec | None:
    """The spec for ``model`` (``X`` or ``models/X``), or None when unknown."""
    return KNOWN_MODELS.get(_model_id(model))


def image_size_for(
    model: str, aspect_ratio: str | None, image_size: str | None
) -> tuple[int, int]:
    """Documented output pixel size (width, height) for a model, ratio and size.

    A missing ratio means 1:1 and a missing size means 1K. Models without sizes
    (flash) ignore ``image_size``. Raises ValueError for unknown models, ratios or sizes.
    """
    spec = resolve_model(model)
    if spec is None:
        raise ValueError(f"unknown model: {model}")
    ratio = aspect_ratio or "1:1"
    if ratio not in ASPECT_RATIOS:
        raise ValueError(f"unsupported aspect ratio: {ratio}")
    label = (image_size or "1K") if spec.has_sizes else "1K"
    if label not in spec.pixels:
        raise ValueError(f"unsupported image size: {label}")
    return spec.pixels[label][ratio]


def _closest_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest (in log space) to width:height."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        a, b = ratio.split(":")
        return abs(math.log(int(a) / int(b)) - target)

    return min(ASPECT_RATIOS, key=distance)


# --------------------------------------------------------------------------- wire helpers

_SNAKE_PIECE = re.compile(r"_([a-z0-9])")
_TO_STANDARD_B64 = str.maketrans("-_", "+/")

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_STATUS_MESSAGES: dict[int, str] = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    408: "The request timed out. Please try again.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_IMAGE_PROCESSING_ERROR = (
    "Unable to process input image. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)


def camelize_keys(value: Any) -> Any:
    """Recursively rewrite every dict key from snake_case to camelCase."""
    if isinstance(value, dict):
        return {
            _SNAKE_PIECE.sub(lambda m: m.group(1).upper(), str(key)): camelize_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [camelize_keys(item) for item in value]
    return value


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not. Raises binascii.Error."""
    cleaned = "".join(text.split()).rstrip("=").translate(_TO_STANDARD_B64)
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ApiError(Exception):
    """An error answered as Google's ``{"error": {...}}`` JSON body."""

    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> str:
        return _STATUS_NAMES.get(self.code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


# --------------------------------------------------------------------------- signatures

_SIGNATURE_SECRET = b"imagebot/offline-gemini/thought-signature/v1"
_SIGNATURE_PREFIX = b"sig1"
_DUMMY_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)

PartKind = Literal["text", "image", "file", "other"]


def thought_signature_for(payload: bytes) -> bytes:
    """The signature the stand-in issues for a part with this content.

    ``payload`` is the UTF-8 text of a text part or the decoded bytes of an image.
    """
    digest = hashlib.sha256(payload).digest()
    return _SIGNATURE_PREFIX + hmac.new(_SIGNATURE_SECRET, digest, hashlib.sha256).digest()


def signature_slots(parts: Sequence[tuple[PartKind, bool]]) -> list[int]:
    """Indices of the parts of one model turn that carry a thought signature.

    ``parts`` are ``(kind, is_thought)`` pairs. Every non-thought image is signed; the
    first non-thought text is signed when no image precedes it; thoughts never are.
    """
    slots: list[int] = []
    seen_image = seen_text = False
    for index, (kind, thought) in enumerate(parts):
        if thought:
            continue
        if kind == "image":
            slots.append(index)
            seen_image = True
        elif kind == "text" and not seen_text:
            seen_text = True
            if not seen_image:
                slots.append(index)
    return slots


# --------------------------------------------------------------------------- request parsing

_ALLOWED_MIME = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
_DATA_FIELDS = (
    "text", "inlineData", "fileData", "functionCall", "functionResponse",
    "executableCode", "codeExecutionResult", "toolCall", "toolResponse",
)
_THUMB_SOURCE_MAX = 640
_INTERLEAVE_WORDS = re.compile(r"\bstep[\s-]+by[\s-]+step\b|\brecipe", re.IGNORECASE)


@dataclass(frozen=True)
class _Part:
    kind: PartKind
    text: str = ""
    data: bytes = b""
    mime: str = ""
    uri: str = ""
    thought: bool = False
    signature: str | None = None

    def payload(self) -> bytes:
        return self.text.encode("utf-8") if self.kind == "text" else self.data


@dataclass(frozen=True)
class _Content:
    role: str
    parts: tuple[_Part, ...]


@dataclass(frozen=True)
class _Thumb:
    image: Image.Image
    label: str


@dataclass(frozen=True)
class ParsedRequest:
    """A validated generate request, reduced to what the answer depends on."""

    model: str
    spec: ModelSpec
    contents: tuple[_Content, ...]
    aspect_ratio: str
    ratio_from_input: bool
    image_size: str | None
    width: int
    height: int
    want_text: bool
    search: bool
    prompt: str
    thumbs: tuple[_Thumb, ...]
    history_images: int
    seed: bytes

    @property
    def interleaved(self) -> bool:
        return bool(_INTERLEAVE_WORDS.search(self.prompt))


def load_json(raw: bytes) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_request(
    body: Any, size: int, model: str, spec: ModelSpec, *, strict: bool
) -> ParsedRequest:
    """Validate a generate request like the real API and reduce it. Raises ApiError."""
    if size > MAX_REQUEST_BYTES:
        raise _invalid(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected a JSON object.")
    request = camelize_keys(body)
    contents = _parse_contents(request.get("contents"))
    config = request.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise _invalid("Invalid JSON payload received. 'generationConfig' must be an object.")
    ratio, image_size = _parse_image_config(config, spec, model)
    want_text = _parse_modalities(config, model)
    last = contents[-1]
    _check_image_limit(last, spec, model)
    thumbs, first_size = _load_thumbs(last)
    history = contents[:-1]
    _check_history_images(history)
    if strict:
        _check_signatures(contents)
    ratio_from_input = ratio is None and first_size is not None
    if ratio is None:
        ratio = _closest_ratio(*first_size) if first_size else "1:1"
    width, height = spec.pixels[image_size or "1K"][ratio]
    return ParsedRequest(
        model=model,
        spec=spec,
        contents=contents,
        aspect_ratio=ratio,
        ratio_from_input=ratio_from_input,
        image_size=image_size,
        width=width,
        height=height,
        want_text=want_text,
        search=_wants_search(request.get("tools")),
        prompt="\n".join(p.text for p in last.parts if p.kind == "text" and not p.thought),
        thumbs=thumbs,
        history_images=sum(p.kind in ("image", "file") for c in history for p in c.parts),
        seed=_request_seed(model, contents, request),
    )


def _parse_contents(raw: Any) -> tuple[_Content, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
    contents = tuple(_parse_content(item, ci) for ci, item in enumerate(raw))
    if contents[-1].role != "user":
        raise _invalid(
            "Please ensure that the last content in contents has the role 'user' "
            f"(found '{contents[-1].role}')."
        )
    return contents


def _parse_content(raw: Any, ci: int) -> _Content:
    if not isinstance(raw, dict):
        raise _invalid(f"Invalid JSON payload received. contents[{ci}] must be an object.")
    role = raw.get("role") or "user"
    if role not in ("user", "model"):
        raise _invalid("Please use a valid role: user, model.")
    parts = raw.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _invalid(
            f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty.\n"
        )
    return _Content(role, tuple(_parse_part(part, ci, pi) for pi, part in enumerate(parts)))


def _parse_part(raw: Any, ci: int, pi: int) -> _Part:
    where = f"contents[{ci}].parts[{pi}]"
    if not isinstance(raw, dict):
        raise _invalid(f"Invalid JSON payload received. {where} must be an object.")
    present = [name for name in _DATA_FIELDS if name in raw]
    if not present:
        raise _invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
            "one initialized field\n"
        )
    if len(present) > 1:
        raise _invalid(
            f"Invalid value at '{where}' (oneof), oneof field 'data' is already set. "
            f"Cannot set '{present[1]}'"
        )
    thought = bool(raw.get("thought"))
    signature = raw.get("thoughtSignature")
    signature = signature if isinstance(signature, str) else None
    name = present[0]
    if name == "text":
        return _Part("text", text=str(raw["text"]), thought=thought, signature=signature)
    if name == "inlineData":
        mime, data = _parse_inline(raw["inlineData"], where)
        return _Part("image", data=data, mime=mime, thought=thought, signature=signature)
    if name == "fileData":
        mime, uri = _parse_file(raw["fileData"], where)
        return _Part("file", mime=mime, uri=uri, thought=thought, signature=signature)
    return _Part("other", thought=thought, signature=signature)


def _check_mime(mime: Any, where: str) -> str:
    if not isinstance(mime, str) or not mime:
        raise _invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is required\n")
    if mime.lower() not in _ALLOWED_MIME:
        raise _invalid(f"Unsupported MIME type: {mime}")
    return mime.lower()


def _parse_inline(raw: Any, where: str) -> tuple[str, bytes]:
    if not isinstance(raw, dict):
        raise _invalid(f"Invalid JSON payload received. {where}.inline_data must be an object.")
    mime = _check_mime(raw.get("mimeType"), f"{where}.inline_data")
    text = raw.get("data")
    try:
        if not isinstance(text, str) or not text:
            raise binascii.Error("empty")
        data = decode_base64(text)
    except (binascii.Error, ValueError):
        shown = str(text)[:20]
        raise _invalid(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
            f'Base64 decoding failed for "{shown}"'
        ) from None
    return mime, data


def _parse_file(raw: Any, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("fileUri"), str):
        raise _invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: file_uri is required\n")
    return _check_mime(raw.get("mimeType"), f"{where}.file_data"), raw["fileUri"]


def _parse_image_config(
    config: Mapping[str, Any], spec: ModelSpec, model: str
) -> tuple[str | None, str | None]:
    image_config = config.get("imageConfig") or {}
    if not isinstance(image_config, dict):
        raise _invalid("Invalid JSON payload received. 'imageConfig' must be an object.")
    ratio = image_config.get("aspectRatio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        raise _invalid(
            f"Unsupported aspect ratio: {ratio}. Supported values are: {', '.join(ASPECT_RATIOS)}."
        )
    size = image_config.get("imageSize")
    if size is None:
        return ratio, "1K" if spec.has_sizes else None
    if not spec.has_sizes:
        raise _invalid(f"Image size is not supported for model {model}.")
    if size not in IMAGE_SIZES:
        raise _invalid(
            f"Unsupported image size: {size}. Supported values are 1K, 2K and 4K "
            "(uppercase K)."
        )
    return ratio, size


def _parse_modalities(config: Mapping[str, Any], model: str) -> bool:
    """Validate responseModalities; return whether a text part may be answered."""
    raw = config.get("responseModalities")
    if raw is None or raw == []:
        return True
    if not isinstance(raw, list):
        raise _invalid("Invalid JSON payload received. 'responseModalities' must be a list.")
    values = {str(item).upper() for item in raw}
    unknown = sorted(values - {"TEXT", "IMAGE"})
    if unknown:
        raise _invalid(f"Unsupported response modality: {unknown[0]}. Use TEXT and/or IMAGE.")
    if "IMAGE" not in values:
        raise _invalid(
            f"Model {model} does not support the requested response modalities: text"
        )
    return "TEXT" in values


def _wants_search(tools: Any) -> bool:
    if not isinstance(tools, list):
        return False
    return any(
        isinstance(tool, dict) and ("googleSearch" in tool or "googleSearchRetrieval" in tool)
        for tool in tools
    )


def _check_image_limit(last: _Content, spec: ModelSpec, model: str) -> None:
    count = sum(p.kind in ("image", "file") for p in last.parts)
    if count > spec.max_input_images:
        raise _invalid(
            f"Too many input images: {count}. Model {model} accepts at most "
            f"{spec.max_input_images} images per request."
        )


_heif_state: dict[str, bool] = {}


def _heif_available() -> bool:
    """Register pillow-heif's opener once; False when it is not installed."""
    if "ok" not in _heif_state:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _heif_state["ok"] = False
        else:
            register_heif_opener()
            _heif_state["ok"] = True
    return _heif_state["ok"]


def _can_decode(mime: str) -> bool:
    return mime not in ("image/heic", "image/heif") or _heif_available()


def _placeholder(label: str) -> _Thumb:
    return _Thumb(Image.new("RGB", (64, 64), (92, 96, 110)), label)


def _load_thumbs(last: _Content) -> tuple[tuple[_Thumb, ...], tuple[int, int] | None]:
    """Decode the last turn's images into thumbnails; also the first image's size."""
    thumbs: list[_Thumb] = []
    first_size: tuple[int, int] | None = None
    for part in last.parts:
        number = len(thumbs) + 1
        if part.kind == "file":
            thumbs.append(_placeholder(f"#{number} file"))
        elif part.kind == "image" and not _can_decode(part.mime):
            thumbs.append(_placeholder(f"#{number} {part.mime.split('/')[1]}"))
        elif part.kind == "image":
            image, (width, height) = _thumbnail(part.data)
            first_size = first_size or (width, height)
            thumbs.append(_Thumb(image, f"#{number} {width}x{height}"))
    return tuple(thumbs), first_size


def _thumbnail(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """Decode input bytes to a small RGB thumbnail and the upright original size.

    Raises ApiError when Pillow cannot decode the image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            opened.draft("RGB", (_THUMB_SOURCE_MAX, _THUMB_SOURCE_MAX))
            image = ImageOps.exif_transpose(opened) or opened
            image.load()
            if (image.width > image.height) != (width > height):
                width, height = height, width
            thumb = _flatten(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _invalid(_IMAGE_PROCESSING_ERROR) from None
    thumb.thumbnail((_THUMB_SOURCE_MAX, _THUMB_SOURCE_MAX), Image.Resampling.BILINEAR)
    return thumb, (width, height)


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (200, 200, 200, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _check_history_images(history: Sequence[_Content]) -> None:
    for content in history:
        for part in content.parts:
            if part.kind == "image" and _can_decode(part.mime):
                _verify_image(part.data)


def _verify_image(data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _invalid(_IMAGE_PROCESSING_ERROR) from None


def _model_turns(contents: Sequence[_Content]) -> list[list[tuple[int, int, _Part]]]:
    """Runs of consecutive model contents as (content index, part index, part) lists."""
    turns: list[list[tuple[int, int, _Part]]] = []
    previous = ""
    for ci, content in enumerate(contents):
        if content.role == "model":
            if previous != "model":
                turns.append([])
            turns[-1].extend((ci, pi, part) for pi, part in enumerate(content.parts))
        previous = content.role
    return turns


def _check_signatures(contents: Sequence[_Content]) -> None:
    for turn in _model_turns(contents):
        kinds = [(part.kind, part.thought) for _, _, part in turn]
        for slot in signature_slots(kinds):
            ci, pi, part = turn[slot]
            _check_signature(part, ci + 1, pi + 1)


def _check_signature(part: _Part, content_pos: int, part_pos: int) -> None:
    label = "Image" if part.kind == "image" else "Text"
    where = f"in content position {content_pos}, part position {part_pos}."
    if not part.signature:
        raise _invalid(f"{label} part is missing a thought_signature {where}")
    if part.signature in _DUMMY_SIGNATURES:
        return
    try:
        given = decode_base64(part.signature)
    except (binascii.Error, ValueError):
        given = b""
    if given.decode("latin-1") in _DUMMY_SIGNATURES:
        return
    if not hmac.compare_digest(given, thought_signature_for(part.payload())):
        raise _invalid(f"Corrupted thought signature {where}")


def _request_seed(model: str, contents: Sequence[_Content], request: Mapping[str, Any]) -> bytes:
    """Digest of everything the answer may depend on (decoded bytes, not base64 text)."""
    canonical = {
        "model": model,
        "contents": [
            [c.role]
            + [
                [p.kind, p.thought, p.text, p.mime, p.uri, hashlib.sha256(p.data).hexdigest()]
                for p in c.parts
            ]
            for c in contents
        ],
        "generationConfig": request.get("generationConfig"),
        "tools": request.get("tools"),
        "systemInstruction": request.get("systemInstruction"),
    }
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).digest()


# --------------------------------------------------------------------------- rendering

# Output frames are palette PNGs. Palette layout (indices):
_GRADIENT_LEVELS = 128  # 0..127 background gradient
_RAMP_LEVELS = 16  # antialiasing ramps, background colour -> text colour
_RAMP_TITLE = _GRADIENT_LEVELS  # band -> accent (banner)
_RAMP_BAND = _RAMP_TITLE + _RAMP_LEVELS  # band -> white (info line, footer)
_RAMP_PANEL = _RAMP_BAND + _RAMP_LEVELS  # panel -> white (prompt, thumbnails panel)
_THUMB_BASE = _RAMP_PANEL + _RAMP_LEVELS  # quantised thumbnail colours
_THUMB_COLORS = 256 - _THUMB_BASE

RGB = tuple[int, int, int]
_BAND_RGB: RGB = (17, 19, 27)
_ACCENT_RGB: RGB = (255, 206, 84)
_WHITE_RGB: RGB = (246, 246, 246)


@dataclass(frozen=True)
class RenderJob:
    """Everything one preview frame shows."""

    width: int
    height: int
    title: str
    info: str
    heading: str
    body: str
    footer: str
    color_seed: bytes
    thumbs: tuple[_Thumb, ...] = ()
    thought: bool = False


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _gradient_colors(seed: bytes, thought: bool) -> tuple[RGB, RGB, RGB]:
    """Start, end and panel colours derived from the seed."""
    hue = seed[0] / 255
    hue2 = hue + 0.08 + seed[1] / 255 * 0.25
    saturation = 0.12 if thought else 0.5 + seed[2] / 255 * 0.15
    start = _hsv(hue, saturation, 0.9)
    end = _hsv(hue2, saturation + 0.1, 0.42)
    panel = _mix(_mix(start, end, 0.5), (8, 8, 14), 0.78)
    return start, end, panel


def _palette(seed: bytes, thought: bool, thumb_palette: Sequence[int]) -> list[int]:
    start, end, panel = _gradient_colors(seed, thought)
    palette: list[int] = []
    for i in range(_GRADIENT_LEVELS):
        palette.extend(_mix(start, end, i / (_GRADIENT_LEVELS - 1)))
    for low, high in ((_BAND_RGB, _ACCENT_RGB), (_BAND_RGB, _WHITE_RGB), (panel, _WHITE_RGB)):
        for i in range(_RAMP_LEVELS):
            palette.extend(_mix(low, high, i / (_RAMP_LEVELS - 1)))
    palette.extend(thumb_palette[: _THUMB_COLORS * 3])
    return palette + [0] * (768 - len(palette))


def _gradient(width: int, height: int, seed: bytes) -> Image.Image:
    """Index image (mode L) of a diagonal gradient over palette levels 0..127."""
    vertical = Image.linear_gradient("L")
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90)
    mixed = Image.blend(horizontal, vertical, 0.3 + seed[3] / 255 * 0.4)
    if seed[4] & 1:
        mixed = mixed.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mixed = mixed.point([v * (_GRADIENT_LEVELS - 1) // 255 for v in range(256)])
    small = mixed.resize((max(2, width // 8), max(2, height // 8)), Image.Resampling.BILINEAR)
    return small.resize((width, height), Image.Resampling.NEAREST)


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, round(size)))


def _fit_font(text: str, max_width: int, size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest font up to ``size`` that renders ``text`` within ``max_width``."""
    font = _font(size)
    width = font.getlength(text)
    if width > max_width > 0:
        font = _font(size * max_width / width * 0.97)
    return font


def _ramp_lut(base: int) -> list[int]:
    return [base + (v * (_RAMP_LEVELS - 1) + 127) // 255 for v in range(256)]


TextLine = tuple[int, int, str, "ImageFont.FreeTypeFont | ImageFont.ImageFont"]


def _paste_text(
    canvas: Image.Image, box: tuple[int, int, int, int], lines: Sequence[TextLine], ramp: int
) -> None:
    """Draw antialiased lines into ``box`` (solid ramp background) via a palette ramp."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    for x, y, text, font in lines:
        draw.text((x, y), text, font=font, fill=255)
    canvas.paste(mask.point(_ramp_lut(ramp)), (x0, y0))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap by rendered width; words longer than a line are split."""
    lines: list[str] = []
    for paragraph in (text or "").splitlines() or [""]:
        current = ""
        for word in paragraph.split() or [""]:
            candidate = f"{current} {word}".strip()
            if font.getlength(candidate) <= width or not current:
                current = candidate
            else:
                lines.append(current)
                current = word
            while font.getlength(current) > width and len(current) > 1:
                cut = max(1, int(len(current) * width / font.getlength(current)))
                lines.append(current[:cut])
                current = current[cut:]
        lines.append(current)
    return lines


def _fit_lines(lines: list[str], max_lines: int) -> list[str]:
    if len(lines) <= max_lines:
        return lines
    kept = lines[: max(1, max_lines)]
    kept[-1] = kept[-1].rstrip()[:-1] + "…" if len(kept[-1]) > 1 else "…"
    return kept


def render_png(job: RenderJob) -> bytes:
    """Render one preview frame as a PNG of exactly ``job.width`` x ``job.height``."""
    width, height = job.width, job.height
    unit = min(width, height) / 100
    pad = max(4, round(4 * unit))
    canvas = _gradient(width, height, job.color_seed)
    band_bottom = _draw_band(canvas, job, unit, pad)
    footer_top = _draw_footer(canvas, job, unit, pad)
    top, bottom = band_bottom + pad, footer_top - pad
    thumb_palette: list[int] = []
    if job.thumbs:
        panel_h = _thumbs_height(job, unit, width - 2 * pad, bottom - top)
        box = (pad, bottom - panel_h, width - pad, bottom)
        thumb_palette = _draw_thumbs(canvas, job.thumbs, unit, box)
        bottom = box[1] - pad
    _draw_prompt(canvas, job, unit, (pad, top, width - pad, bottom))
    canvas.putpalette(_palette(job.color_seed, job.thought, thumb_palette))
    out = io.BytesIO()
    canvas.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _draw_band(canvas: Image.Image, job: RenderJob, unit: float, pad: int) -> int:
    width = canvas.width
    band_h = round(16 * unit)
    ImageDraw.Draw(canvas).rectangle((0, 0, width, band_h), fill=_RAMP_TITLE)
    title_font = _fit_font(job.title, width - 2 * pad, 7 * unit)
    info_font = _fit_font(job.info, width - 2 * pad, 3 * unit)
    title_top, info_top = round(2 * unit), round(10.5 * unit)
    _paste_text(canvas, (pad, title_top, width - pad, info_top), [(0, 0, job.title, title_font)],
                _RAMP_TITLE)
    _paste_text(canvas, (pad, info_top, width - pad, band_h), [(0, 0, job.info, info_font)],
                _RAMP_BAND)
    return band_h


def _draw_footer(canvas: Image.Image, job: RenderJob, unit: float, pad: int) -> int:
    width, height = canvas.size
    top = height - round(6 * unit)
    ImageDraw.Draw(canvas).rectangle((0, top, width, height), fill=_RAMP_BAND)
    font = _fit_font(job.footer, width - 2 * pad, 2.4 * unit)
    _paste_text(canvas, (pad, top + round(1.6 * unit), width - pad, height),
                [(0, 0, job.footer, font)], _RAMP_BAND)
    return top


def _inset(unit: float) -> int:
    """Padding inside panels; at least 0.3 x the corner radius keeps text off the corners."""
    return max(3, round(2.5 * unit))


def _prompt_height(job: RenderJob, unit: float, panel_w: int) -> int:
    """Height the prompt panel needs at its preferred font size."""
    lines = _wrap(job.body, _font(3.6 * unit), panel_w - 2 * _inset(unit))
    return 2 * _inset(unit) + round(4.2 * unit) + len(lines) * round(3.6 * unit * 1.3)


def _thumb_grid(count: int, unit: float, inner_w: int, inner_h: int) -> tuple[int, int]:
    """(columns, cell size) for ``count`` thumbnails inside a panel's inner box."""
    label_h, gap = round(3.2 * unit), round(1.5 * unit)
    return _grid(count, inner_w, inner_h - round(4.2 * unit), label_h, gap, round(30 * unit))


def _thumbs_height(job: RenderJob, unit: float, panel_w: int, available: int) -> int:
    """Thumbnail panel height: what the grid needs, leaving the prompt its room."""
    inset, count = _inset(unit), len(job.thumbs)
    prompt_room = _prompt_height(job, unit, panel_w) + round(4 * unit)
    room = max(available - prompt_room, round(available * 0.3))
    cols, cell = _thumb_grid(count, unit, panel_w - 2 * inset, room - 2 * inset)
    rows = math.ceil(count / cols)
    label_h, gap = round(3.2 * unit), round(1.5 * unit)
    needed = 2 * inset + round(4.2 * unit) + rows * (cell + label_h) + (rows - 1) * gap
    return min(room, needed)


def _panel(canvas: Image.Image, box: tuple[int, int, int, int], unit: float) -> tuple[int, int, int, int]:
    """Draw a rounded panel; return its inner (text-safe) box."""
    radius = max(2, round(2 * unit))
    ImageDraw.Draw(canvas).rounded_rectangle(box, radius, fill=_RAMP_PANEL)
    inset = _inset(unit)
    return box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset


def _draw_prompt(canvas: Image.Image, job: RenderJob, unit: float, box: tuple[int, int, int, int]) -> None:
    if box[3] - box[1] < 8 * unit:
        return
    x0, y0, x1, y1 = _panel(canvas, box, unit)
    heading_font = _font(2.6 * unit)
    heading_h = round(4.2 * unit)
    lines: list[TextLine] = [(0, 0, job.heading, heading_font)]
    for size in (3.6, 3.0, 2.5, 2.1):
        font = _font(size * unit)
        line_h = round(size * unit * 1.3)
        wrapped = _wrap(job.body, font, x1 - x0)
        max_lines = max(1, (y1 - y0 - heading_h) // line_h)
        if len(wrapped) <= max_lines:
            break
    wrapped = _fit_lines(wrapped, max_lines)
    lines += [(0, heading_h + i * line_h, text, font) for i, text in enumerate(wrapped)]
    _paste_text(canvas, (x0, y0, x1, y1), lines, _RAMP_PANEL)


def _grid(count: int, area_w: int, area_h: int, label_h: int, gap: int, cap: int) -> tuple[int, int]:
    """(columns, cell size) that makes square cells as large as possible."""
    best = (1, 1)
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        cell = min(
            (area_w - (cols - 1) * gap) // cols,
            (area_h - rows * label_h - (rows - 1) * gap) // rows,
            cap,
        )
        if cell > best[1]:
            best = (cols, cell)
    return best


def _draw_thumbs(
    canvas: Image.Image, thumbs: Sequence[_Thumb], unit: float, box: tuple[int, int, int, int]
) -> list[int]:
    """Draw the input-image panel; return the thumbnails' palette (RGB triples)."""
    x0, y0, x1, y1 = _panel(canvas, box, unit)
    heading_h, label_h, gap = round(4.2 * unit), round(3.2 * unit), round(1.5 * unit)
    cols, cell = _thumb_grid(len(thumbs), unit, x1 - x0, y1 - y0)
    count = len(thumbs)
    lines: list[TextLine] = [
        (0, 0, f"{count} input image{'s' if count != 1 else ''} in the last user turn",
         _font(2.6 * unit))
    ]
    label_font = _font(min(2.2 * unit, cell / 7))
    positions: list[tuple[int, int]] = []
    for index, thumb in enumerate(thumbs):
        cx = (index % cols) * (cell + gap)
        cy = heading_h + (index // cols) * (cell + label_h + gap)
        positions.append((x0 + cx, y0 + cy))
        lines.append((cx, cy + cell + round(0.4 * unit), thumb.label, label_font))
    _paste_text(canvas, (x0, y0, x1, y1), lines, _RAMP_PANEL)
    tiles, palette = _quantized_tiles([t.image for t in thumbs], max(1, cell))
    for tile, (px, py) in zip(tiles, positions, strict=True):
        canvas.paste(tile, (px + (cell - tile.width) // 2, py + cell - tile.height))
    return palette


def _quantized_tiles(images: Sequence[Image.Image], cell: int) -> tuple[list[Image.Image], list[int]]:
    """Fit images into ``cell`` squares and map them onto the shared thumbnail palette."""
    tiles = [ImageOps.contain(image, (cell, cell), Image.Resampling.BILINEAR) for image in images]
    strip = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    offsets: list[int] = []
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        offsets.append(x)
        x += tile.width
    quantized = strip.quantize(colors=_THUMB_COLORS, method=Image.Quantize.FASTOCTREE)
    palette = (quantized.getpalette() or [])[: _THUMB_COLORS * 3]
    shift = [min(255, v + _THUMB_BASE) for v in range(256)]
    indices = Image.frombytes("L", quantized.size, quantized.tobytes()).point(shift)
    crops = [indices.crop((ox, 0, ox + t.width, t.height)) for ox, t in zip(offsets, tiles, strict=True)]
    return crops, palette


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class _Item:
    """One planned answer part: a text or an image still to be rendered."""

    kind: Literal["text", "image"]
    thought: bool = False
    text: str = ""
    job: RenderJob | None = None


def _short(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _info_line(req: ParsedRequest, width: int, height: int) -> str:
    ratio = req.aspect_ratio + (" (from input image)" if req.ratio_from_input else "")
    pieces = [req.model, ratio] + ([req.image_size] if req.image_size else [])
    return " · ".join([*pieces, f"{width}x{height}"])


def _footer(req: ParsedRequest) -> str:
    earlier = req.history_images
    return (
        f"{len(req.thumbs)} input image(s) this turn · {earlier} earlier image"
        f"{'s' if earlier != 1 else ''} in history · {len(req.contents)} content(s) · "
        f"request {req.seed.hex()[:12]}"
    )


def _image_job(req: ParsedRequest, banner: str, heading: str, variant: int, *, thought: bool) -> RenderJob:
    width, height = (req.width // 2, req.height // 2) if thought else (req.width, req.height)
    seed = hashlib.sha256(req.prompt.encode("utf-8") + bytes([variant])).digest()
    return RenderJob(
        width=width,
        height=height,
        title=banner,
        info=_info_line(req, width, height),
        heading=heading,
        body=req.prompt or "(no text in the last user turn)",
        footer=_footer(req),
        color_seed=seed,
        thumbs=req.thumbs,
        thought=thought,
    )


def _thought_items(req: ParsedRequest, banner: str) -> list[_Item]:
    if not req.spec.thinking:
        return []
    size = f"{req.aspect_ratio} {req.image_size or ''}".strip()
    plan = (
        f"**Composing the offline preview**\n\nI'm laying out a {size} frame for "
        f"\"{_short(req.prompt, 120)}\" with {len(req.thumbs)} reference image(s). "
        "A first draft checks the layout, a second one the text placement."
    )
    items = [_Item("text", thought=True, text=plan)]
    for k in (1, 2):
        heading = f"Thinking · draft {k} of 2"
        items.append(_Item("image", thought=True, job=_image_job(req, banner, heading, k, thought=True)))
    return items


def _final_items(req: ParsedRequest, banner: str) -> list[_Item]:
    if not req.interleaved:
        text = f"Here is an offline preview for: {_short(req.prompt, 300)}"
        image = _Item("image", job=_image_job(req, banner, "Prompt", 0, thought=False))
        return ([_Item("text", text=text)] if req.want_text else []) + [image]
    steps = 2 + req.seed[5] % 2
    items: list[_Item] = []
    for k in range(1, steps + 1):
        if req.want_text:
            text = f"Step {k} of {steps}: offline preview for \"{_short(req.prompt, 120)}\".\n\n"
            items.append(_Item("text", text=text))
        heading = f"Step {k} of {steps} · prompt"
        items.append(_Item("image", job=_image_job(req, banner, heading, 10 + k, thought=False)))
    return items


def _text_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _usage(req: ParsedRequest, items: Sequence[_Item], *, with_candidates: bool = True) -> dict[str, Any]:
    texts = [p.text for c in req.contents for p in c.parts if p.kind == "text"]
    images = sum(p.kind in ("image", "file") for c in req.contents for p in c.parts)
    prompt_text = max(1, sum(len(t) for t in texts) // 4)
    prompt_image = 258 * images
    final = [i for i in items if not i.thought] if with_candidates else []
    image_tokens = req.spec.image_tokens[req.image_size or "1K"] * sum(i.kind == "image" for i in final)
    text_tokens = sum(_text_tokens(i.text) for i in final if i.kind == "text")
    thoughts = sum(_text_tokens(i.text) for i in items if i.thought and i.kind == "text")
    thoughts = thoughts + 160 if thoughts else 0
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_text + prompt_image,
        "candidatesTokenCount": image_tokens + text_tokens,
        "totalTokenCount": prompt_text + prompt_image + image_tokens + text_tokens + thoughts,
        "promptTokensDetails": _details(TEXT=prompt_text, IMAGE=prompt_image),
    }
    if image_tokens or text_tokens:
        usage["candidatesTokensDetails"] = _details(IMAGE=image_tokens, TEXT=text_tokens)
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _details(**counts: int) -> list[dict[str, Any]]:
    return [{"modality": name, "tokenCount": count} for name, count in counts.items() if count]


_GROUNDING_SITES = ("example.com", "example.org", "example.net")
_CHIP_CSS = (
    ".container{align-items:center;border-radius:8px;display:flex;font-family:Google Sans,"
    "Roboto,sans-serif;font-size:14px;line-height:20px;padding:8px 12px;}"
    ".chip{display:inline-block;border:solid 1px;border-radius:16px;min-width:14px;"
    "padding:5px 16px;text-align:center;user-select:none;margin:0 8px;}"
    ".carousel{overflow:auto;scrollbar-width:none;white-space:nowrap;margin-right:-12px;}"
    ".headline{display:flex;margin-right:4px;}"
    "@media (prefers-color-scheme:light){.container{background-color:#fafafa;"
    "box-shadow:0 0 0 1px #0000000f;}.headline-label{color:#1f1f1f;}.chip{background-color:#fff;"
    "border-color:#d2d2d2;color:#5e5e5e;text-decoration:none;}}"
    "@media (prefers-color-scheme:dark){.container{background-color:#1f1f1f;"
    "box-shadow:0 0 0 1px #ffffff26;}.headline-label{color:#fff;}.chip{background-color:#2c2c2c;"
    "border-color:#3c4043;color:#fff;text-decoration:none;}}"
)


def _search_queries(prompt: str) -> list[str]:
    words = re.findall(r"[\w'-]+", prompt.lower())[:8] or ["offline", "preview"]
    base = " ".join(words)
    return [base, f"{' '.join(words[:4])} reference images"]


def _rendered_chips(queries: Sequence[str]) -> str:
    chips = "".join(
        f'<a class="chip" href="https://www.google.com/search?q={urllib.parse.quote_plus(q)}">'
        f"{html.escape(q)}</a>"
        for q in queries
    )
    return (
        f'<style>{_CHIP_CSS}</style><div class="container"><div class="headline">'
        '<span class="headline-label">Search suggestions (offline)</span></div>'
        f'<div class="carousel">{chips}</div></div>'
    )


def _grounding(req: ParsedRequest, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    queries = _search_queries(req.prompt)
    chunks = []
    for index, site in enumerate(_GROUNDING_SITES):
        token = base64.urlsafe_b64encode(hmac.new(req.seed, bytes([index]), hashlib.sha256).digest())
        uri = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/" + token.decode().rstrip("=")
        chunks.append({"web": {"uri": uri, "title": site}})
    metadata: dict[str, Any] = {
        "searchEntryPoint": {"renderedContent": _rendered_chips(queries)},
        "groundingChunks": chunks,
        "webSearchQueries": queries,
    }
    supports = [
        {
            "segment": {"partIndex": index, "startIndex": 0,
                        "endIndex": len(part["text"].encode("utf-8")), "text": part["text"]},
            "groundingChunkIndices": [0, 1, 2],
        }
        for index, part in enumerate(parts)
        if "text" in part and not part.get("thought")
    ][:1]
    if supports:
        metadata["groundingSupports"] = supports
    return metadata


def _wire_parts(items: Sequence[_Item], images: Mapping[int, bytes]) -> list[dict[str, Any]]:
    """Answer parts in wire format, with signatures in the documented slots."""
    slots = set(signature_slots([(item.kind, item.thought) for item in items]))
    parts: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item.kind == "text":
            part: dict[str, Any] = {"text": item.text}
            payload = item.text.encode("utf-8")
        else:
            payload = images[index]
            part = {"inlineData": {"mimeType": "image/png", "data": _b64(payload)}}
        if item.thought:
            part["thought"] = True
        if index in slots:
            part["thoughtSignature"] = _b64(thought_signature_for(payload))
        parts.append(part)
    return parts


@dataclass
class _Answer:
    """An answer before it is split into one JSON body or several stream chunks."""

    parts: list[dict[str, Any]]
    usage: dict[str, Any]
    finish_reason: str | None = "STOP"
    grounding: dict[str, Any] | None = None
    prompt_feedback: dict[str, Any] | None = None


def _candidate(parts: list[dict[str, Any]], finish: str | None, grounding: dict[str, Any] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    if grounding:
        candidate["groundingMetadata"] = grounding
    return candidate


def _envelope(model: str, response_id: str, **fields: Any) -> dict[str, Any]:
    return {**fields, "modelVersion": model, "responseId": response_id}


def _answer_body(answer: _Answer, model: str, response_id: str) -> dict[str, Any]:
    if answer.prompt_feedback is not None:
        return _envelope(model, response_id, promptFeedback=answer.prompt_feedback,
                         usageMetadata=answer.usage)
    candidate = _candidate(answer.parts, answer.finish_reason, answer.grounding)
    return _envelope(model, response_id, candidates=[candidate], usageMetadata=answer.usage)


def _answer_chunks(answer: _Answer, model: str, response_id: str) -> list[dict[str, Any]]:
    """One chunk per part; the last one carries finishReason, grounding and usage."""
    if answer.prompt_feedback is not None or len(answer.parts) <= 1:
        return [_answer_body(answer, model, response_id)]
    chunks = [
        _envelope(model, response_id, candidates=[_candidate([part], None, None)])
        for part in answer.parts[:-1]
    ]
    last = _candidate(answer.parts[-1:], answer.finish_reason, answer.grounding)
    chunks.append(_envelope(model, response_id, candidates=[last], usageMetadata=answer.usage))
    return chunks


_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_DANGEROUS_CONTENT",
)


def _blocked(req: ParsedRequest, reason: str) -> _Answer:
    ratings = [
        {"category": category, "probability": "HIGH" if i == 0 else "NEGLIGIBLE"}
        for i, category in enumerate(_SAFETY_CATEGORIES)
    ]
    feedback = {"blockReason": reason, "safetyRatings": ratings}
    return _Answer([], _usage(req, [], with_candidates=False), None, None, feedback)


def _text_answer(req: ParsedRequest, text: str, finish: str) -> _Answer:
    items = [_Item("text", text=text)]
    return _Answer(_wire_parts(items, {}), _usage(req, items), finish)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class _Fault:
    kind: Literal["status", "disconnect", "block", "finish", "text"]
    code: int = 0
    reason: str = ""
    text: str = ""
    retry_delay: str = "1s"
    with_text: bool = False

    @property
    def early(self) -> bool:
        """Transport faults apply before validation; answer faults after it."""
        return self.kind in ("status", "disconnect")


class Faults:
    """FIFO fault injection shared by all generate requests."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        self._queue: deque[_Fault] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def queue_status(self, *codes: int, retry_delay: str = "1s") -> None:
        """Answer the next requests with these HTTP error statuses, in order."""
        for code in codes:
            if not 400 <= code <= 599:
                raise ValueError(f"not an HTTP error status: {code}")
            self._queue.append(_Fault("status", code=code, retry_delay=retry_delay))

    def queue_finish(self, reason: str, *, with_text: bool = False) -> None:
        """Answer a candidate with this finishReason and no content (or only a text).

        ``"STOP"`` with no content gives the "empty turn" a chat drops from its history.
        """
        if reason in ("CONTINUATION", ""):
            raise ValueError(f"unsupported finish reason: {reason!r}")
        self._queue.append(_Fault("finish", reason=reason, with_text=with_text))

    def queue_block(self, reason: str = "SAFETY") -> None:
        """Answer no candidates and ``promptFeedback.blockReason=reason``."""
        self._queue.append(_Fault("block", reason=reason))

    def queue_text_only(self, text: str = "I can only describe this image in words.") -> None:
        """Answer STOP with a single (signed) text part and no image."""
        self._queue.append(_Fault("text", text=text))

    def queue_disconnect(self) -> None:
        """Close the connection without answering."""
        self._queue.append(_Fault("disconnect"))

    def clear(self) -> None:
        """Drop queued faults and reset latency."""
        self._queue.clear()
        self.latency = 0.0

    def take(self, *, early: bool) -> _Fault | None:
        """Pop the head fault if it is of the requested phase."""
        if self._queue and self._queue[0].early == early:
            return self._queue.popleft()
        return None


def _status_error(fault: _Fault) -> ApiError:
    details = None
    if fault.code == 429:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay}]
    return ApiError(fault.code, _STATUS_MESSAGES.get(fault.code, "Offline fault."), details)


# --------------------------------------------------------------------------- server

_PATH = re.compile(r"^/(v1|v1beta)/models/(.+?):(generateContent|streamGenerateContent)$")
_MODELS_PATH = re.compile(r"^/(v1|v1beta)/models(?:/(.+))?$")
_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_BAD_KEY_DETAILS = [{
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
    "metadata": {"service": "generativelanguage.googleapis.com"},
}]


class _Disconnect(Exception):
    """Raised to drop the connection without an answer."""


@dataclass
class RecordedRequest:
    """One request as received; ``status`` is what was answered (0: disconnected)."""

    path: str
    model: str
    method: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0


class OfflineGemini:
    """An offline Gemini image API on aiohttp; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str | None = "offline-key",
        strict_signatures: bool = True,
        banner: str = "OFFLINE PREVIEW",
    ) -> None:
        self.api_key = api_key
        self.strict_signatures = strict_signatures
        self.banner = banner
        self.requests: list[RecordedRequest] = []
        self.faults = Faults()
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=4 * MAX_REQUEST_BYTES)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    async def __aenter__(self) -> OfflineGemini:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); return the base URL."""
        # In-flight requests (an injected latency) are cut short rather than awaited.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset(self) -> None:
        """Forget recorded requests and queued faults."""
        self.requests.clear()
        self.faults.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _PATH.match(request.path)
        record = RecordedRequest(
            path=request.path,
            model=_model_id(match.group(2)) if match else "",
            method=match.group(3) if match else "",
            headers={k.lower(): v for k, v in request.headers.items()},
            body=None,
            query=dict(request.query),
        )
        self.requests.append(record)
        try:
            response = await self._route(request, record, match)
        except ApiError as error:
            response = error.response()
        except _Disconnect:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        except Exception:  # answer like Google instead of aiohttp's text/plain 500
            _log.exception("offline Gemini failed on %s", request.path)
            response = ApiError(500, _STATUS_MESSAGES[500]).response()
        if not response.prepared:
            record.status = response.status
        return response

    async def _route(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str] | None
    ) -> web.StreamResponse:
        if match is None:
            return await self._other(request)
        if request.method != "POST":
            raise ApiError(404, f"Method not found: {request.method} {request.path}")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _invalid(
                f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."
            ) from None
        record.body = await asyncio.to_thread(load_json, raw)
        # Latency is the whole time to answer, as with the real model: rendering happens
        # within it, and only what is left of it is slept.
        deadline = asyncio.get_running_loop().time() + self.faults.latency
        fault = self.faults.take(early=True)
        if fault is not None:
            await _sleep_until(deadline)
        if fault is not None and fault.kind == "disconnect":
            raise _Disconnect
        if fault is not None:
            raise _status_error(fault)
        self._check_key(request)
        version, model = match.group(1), record.model
        spec = resolve_model(model)
        if spec is None:
            raise ApiError(404, _not_found(model, version))
        parsed = await asyncio.to_thread(
            parse_request, record.body, len(raw), model, spec, strict=self.strict_signatures
        )
        answer = await self._answer(parsed, self.faults.take(early=False))
        await _sleep_until(deadline)
        response_id = secrets.token_urlsafe(17)
        if record.method == "generateContent":
            return web.json_response(_answer_body(answer, model, response_id))
        chunks = _answer_chunks(answer, model, response_id)
        record.status = 200
        return await _stream(request, chunks, sse=request.query.get("alt") == "sse")

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or ""
        if not key:
            raise ApiError(403, _MISSING_KEY)
        if self.api_key is not None and not hmac.compare_digest(key, self.api_key):
            raise ApiError(400, "API key not valid. Please pass a valid API key.", _BAD_KEY_DETAILS)

    async def _answer(self, req: ParsedRequest, fault: _Fault | None) -> _Answer:
        if fault is not None and fault.kind == "block":
            return _blocked(req, fault.reason)
        if fault is not None and fault.kind == "text":
            return _text_answer(req, fault.text, "STOP")
        if fault is not None and fault.kind == "finish":
            if fault.with_text:
                return _text_answer(req, "I can't generate that image.", fault.reason)
            return _Answer([], _usage(req, [], with_candidates=False), fault.reason)
        items = _thought_items(req, self.banner) + _final_items(req, self.banner)
        jobs = {i: item.job for i, item in enumerate(items) if item.job is not None}
        rendered = await asyncio.gather(*(asyncio.to_thread(_render, job) for job in jobs.values()))
        parts = _wire_parts(items, dict(zip(jobs, rendered, strict=True)))
        grounding = _grounding(req, parts) if req.search and req.spec.search else None
        return _Answer(parts, _usage(req, items), "STOP", grounding)

    async def _other(self, request: web.Request) -> web.StreamResponse:
        match = _MODELS_PATH.match(request.path)
        if match is None or request.method != "GET":
            raise ApiError(404, f"Method not found: {request.method} {request.path}")
        self._check_key(request)
        if match.group(2) is None:
            return web.json_response({"models": [_model_info(name) for name in KNOWN_MODELS]})
        model = _model_id(match.group(2))
        if model not in KNOWN_MODELS:
            raise ApiError(404, _not_found(model, match.group(1)))
        return web.json_response(_model_info(model))


_render_cached = functools.lru_cache(maxsize=16)(render_png)


def _render(job: RenderJob) -> bytes:
    """Renders a frame; identical requests without thumbnails (which hold unhashable
    images) reuse the last frames, so a burst of equal requests costs one render."""
    return _render_cached(job) if not job.thumbs else render_png(job)


async def _sleep_until(deadline: float) -> None:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _not_found(model: str, version: str) -> str:
    return (
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods."
    )


def _model_info(name: str) -> dict[str, Any]:
    spec = KNOWN_MODELS[name]
    return {
        "name": f"models/{name}",
        "displayName": f"{name} (offline)",
        "inputTokenLimit": 65536 if spec.thinking else 32768,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "thinking": spec.thinking,
    }


async def _stream(request: web.Request, chunks: Sequence[dict[str, Any]], *, sse: bool) -> web.StreamResponse:
    """Write chunks as SSE events, or as one JSON array when ``alt=sse`` is absent."""
    content_type = "text/event-stream" if sse else "application/json"
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        for index, chunk in enumerate(chunks):
            data = json.dumps(chunk, ensure_ascii=False)
            if sse:
                await response.write(f"data: {data}\r\n\r\n".encode())
            else:
                prefix = "[" if index == 0 else ",\r\n"
                await response.write((prefix + data).encode())
        if not sse:
            await response.write(b"]")
        await response.write_eof()
    return response


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagebot offline-gemini",
        description="Serve an offline stand-in for the Gemini image API.",
        epilog=textwrap.dedent(
            """\
            Point the SDK at it with GOOGLE_GEMINI_BASE_URL=<printed URL> and
            api_version v1beta. The base URL is the only line printed on stdout."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--api-key", default="offline-key", help="accepted key (default offline-key)")
    parser.add_argument("--any-key", action="store_true", help="accept any non-empty API key")
    parser.add_argument("--no-strict", action="store_true", help="do not check thought signatures")
    parser.add_argument("--banner", default="OFFLINE PREVIEW", help="banner text on every image")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait per request")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = OfflineGemini(
        api_key=None if args.any_key else args.api_key,
        strict_signatures=not args.no_strict,
        banner=args.banner,
    )
    server.faults.latency = args.latency
    url = await server.start(args.host, args.port)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: serve until interrupted, printing the base URL on stdout."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main(sys.argv[1:])
