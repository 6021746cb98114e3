"""Request validation: parse a generate request the way the real API checks it."""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from offline_gemini.inputs import check_history_images, load_thumbs
from offline_gemini.models import ASPECT_RATIOS, IMAGE_SIZES, ModelSpec, closest_ratio
from offline_gemini.request import Content, ParsedRequest, Part
from offline_gemini.signatures import check_signatures
from offline_gemini.wire import ApiError, camelize_keys, decode_base64, invalid

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # inline, since January 2026 (20 MB before)

_ALLOWED_MIME = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
_DATA_FIELDS = (
    "text", "inlineData", "fileData", "functionCall", "functionResponse",
    "executableCode", "codeExecutionResult", "toolCall", "toolResponse",
)


@dataclass(frozen=True)
class FileAccess:
    """How ``fileData`` parts are read.

    Attributes:
        resolve: the bytes of the file a URI names and their SHA-256; raises ApiError
            (400 for a URI of the wrong form, 403 for an unknown or expired file).
        refuse_model_files: refuse image files in model turns, as a model that only
            takes its own images back inline would.
    """

    resolve: Callable[[str], tuple[bytes, bytes]]
    refuse_model_files: bool = False


def payload_too_large() -> ApiError:
    """The live API's answer to a request over `MAX_REQUEST_BYTES`."""
    return invalid(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")


def parse_request(
    body: Any, size: int, model: str, spec: ModelSpec, *, strict: bool,
    files: FileAccess | None = None, dummy_signatures: bool = True,
) -> ParsedRequest:
    """Validate a generate request like the real API and reduce it. Raises ApiError.

    Without ``files``, ``fileData`` parts are kept unread (kind ``file``). With
    ``dummy_signatures`` False (and ``strict``), Google's dummy signature on a history
    part is refused as a missing one.
    """
    if size > MAX_REQUEST_BYTES:
        raise payload_too_large()
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected a JSON object.")
    request = camelize_keys(body)
    contents = _parse_contents(request.get("contents"), files)
    config = request.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise invalid("Invalid JSON payload received. 'generationConfig' must be an object.")
    ratio, image_size = _parse_image_config(config, spec, model)
    want_text = _parse_modalities(config, model)
    last = contents[-1]
    _check_image_limit(last, spec, model)
    thumbs, first_size = load_thumbs(last)
    history = contents[:-1]
    check_history_images(history)
    if strict:
        check_signatures(contents, accept_dummy=dummy_signatures)
    ratio_from_input = ratio is None and first_size is not None
    if ratio is None:
        ratio = closest_ratio(*first_size) if first_size else "1:1"
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


def _parse_contents(raw: Any, files: FileAccess | None) -> tuple[Content, ...]:
    if not isinstance(raw, list) or not raw:
        raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
    contents = tuple(_parse_content(item, ci, files) for ci, item in enumerate(raw))
    if contents[-1].role != "user":
        raise invalid(
            "Please ensure that the last content in contents has the role 'user' "
            f"(found '{contents[-1].role}')."
        )
    return contents


def _parse_content(raw: Any, ci: int, files: FileAccess | None) -> Content:
    if not isinstance(raw, dict):
        raise invalid(f"Invalid JSON payload received. contents[{ci}] must be an object.")
    role = raw.get("role") or "user"
    if role not in ("user", "model"):
        raise invalid("Please use a valid role: user, model.")
    parts = raw.get("parts")
    if not isinstance(parts, list) or not parts:
        raise invalid(
            f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty.\n"
        )
    parsed = tuple(_parse_part(part, ci, pi) for pi, part in enumerate(parts))
    if files is not None:
        parsed = tuple(_read_file(part, role, f"contents[{ci}].parts[{pi}]", files)
                       if part.kind == "file" else part for pi, part in enumerate(parsed))
    return Content(role, parsed)


def _read_file(part: Part, role: str, where: str, files: FileAccess) -> Part:
    """A ``fileData`` part as an image part holding the file's bytes."""
    if role == "model" and files.refuse_model_files:
        raise invalid(
            f"* GenerateContentRequest.{where}.file_data: file data is not supported in "
            "model content; send model images inline.\n"
        )
    data, digest = files.resolve(part.uri)
    return replace(part, kind="image", data=data, digest=digest)


def _parse_part(raw: Any, ci: int, pi: int) -> Part:
    where = f"contents[{ci}].parts[{pi}]"
    if not isinstance(raw, dict):
        raise invalid(f"Invalid JSON payload received. {where} must be an object.")
    present = [name for name in _DATA_FIELDS if name in raw]
    if not present:
        raise invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
            "one initialized field\n"
        )
    if len(present) > 1:
        raise invalid(
            f"Invalid value at '{where}' (oneof), oneof field 'data' is already set. "
            f"Cannot set '{present[1]}'"
        )
    thought = bool(raw.get("thought"))
    signature = raw.get("thoughtSignature")
    signature = signature if isinstance(signature, str) else None
    name = present[0]
    if name == "text":
        return Part("text", text=str(raw["text"]), thought=thought, signature=signature)
    if name == "inlineData":
        mime, data = _parse_inline(raw["inlineData"], where)
        return Part("image", data=data, mime=mime, thought=thought, signature=signature)
    if name == "fileData":
        mime, uri = _parse_file(raw["fileData"], where)
        return Part("file", mime=mime, uri=uri, thought=thought, signature=signature)
    return Part("other", thought=thought, signature=signature)


def _check_mime(mime: Any, where: str) -> str:
    if not isinstance(mime, str) or not mime:
        raise invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is required\n")
    if mime.lower() not in _ALLOWED_MIME:
        raise invalid(f"Unsupported MIME type: {mime}")
    return mime.lower()


def _parse_inline(raw: Any, where: str) -> tuple[str, bytes]:
    if not isinstance(raw, dict):
        raise invalid(f"Invalid JSON payload received. {where}.inline_data must be an object.")
    mime = _check_mime(raw.get("mimeType"), f"{where}.inline_data")
    text = raw.get("data")
    try:
        if not isinstance(text, str) or not text:
            raise binascii.Error("empty")
        data = decode_base64(text)
    except (binascii.Error, ValueError):
        shown = str(text)[:20]
        raise invalid(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
            f'Base64 decoding failed for "{shown}"'
        ) from None
    return mime, data


def _parse_file(raw: Any, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("fileUri"), str):
        raise invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: file_uri is required\n")
    return _check_mime(raw.get("mimeType"), f"{where}.file_data"), raw["fileUri"]


def _parse_image_config(
    config: Mapping[str, Any], spec: ModelSpec, model: str
) -> tuple[str | None, str | None]:
    image_config = config.get("imageConfig") or {}
    if not isinstance(image_config, dict):
        raise invalid("Invalid JSON payload received. 'imageConfig' must be an object.")
    ratio = image_config.get("aspectRatio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        raise invalid(
            f"Unsupported aspect ratio: {ratio}. Supported values are: {', '.join(ASPECT_RATIOS)}."
        )
    size = image_config.get("imageSize")
    if size is None:
        return ratio, "1K" if spec.has_sizes else None
    if not spec.has_sizes:
        raise invalid(f"Image size is not supported for model {model}.")
    if size not in IMAGE_SIZES:
        raise invalid(
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
        raise invalid("Invalid JSON payload received. 'responseModalities' must be a list.")
    values = {str(item).upper() for item in raw}
    unknown = sorted(values - {"TEXT", "IMAGE"})
    if unknown:
        raise invalid(f"Unsupported response modality: {unknown[0]}. Use TEXT and/or IMAGE.")
    if "IMAGE" not in values:
        raise invalid(
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


def _check_image_limit(last: Content, spec: ModelSpec, model: str) -> None:
    count = sum(p.kind in ("image", "file") for p in last.parts)
    if count > spec.max_input_images:
        raise invalid(
            f"Too many input images: {count}. Model {model} accepts at most "
            f"{spec.max_input_images} images per request."
        )


def _request_seed(model: str, contents: Sequence[Content], request: Mapping[str, Any]) -> bytes:
    """Digest of everything the answer may depend on (decoded bytes, not base64 text)."""
    canonical = {
        "model": model,
        "contents": [
            [c.role]
            + [
                # A file read is the same input as its bytes inline: its URI does not count.
                [p.kind, p.thought, p.text, p.mime, "" if p.data else p.uri,
                 (p.digest or hashlib.sha256(p.data).digest()).hex()]
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


