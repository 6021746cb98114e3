"""Offline stand-in for the Gemini REST API, for demos and tests without network.

`OfflineGemini` is an aiohttp server speaking the REST protocol google-genai 3.x uses
for image models: ``:generateContent``, ``:streamGenerateContent``, ListModels, the
Files API, the Batch API and Imagen's ``:predict``. It validates requests as the real
API does and answers with deterministic preview images of the documented pixel sizes.
Everything in an answer except ``responseId`` is a pure function of the request;
thought signatures verify without server state; queued faults are FIFO (transport
faults before validation, answer faults after it) and apply to generate requests only.
"""

from offline_gemini.clock import Clock
from offline_gemini.faults import Faults
from offline_gemini.files import FileStore, StoredFile
from offline_gemini.models import (
    ASPECT_RATIOS,
    IMAGE_SIZES,
    KNOWN_MODELS,
    ModelSpec,
    image_size_for,
    resolve_model,
)
from offline_gemini.render import RenderJob, render_cached, render_png
from offline_gemini.request import ParsedRequest, PartKind
from offline_gemini.server import OfflineGemini, RecordedRequest
from offline_gemini.signatures import signature_slots, thought_signature_for
from offline_gemini.validation import MAX_REQUEST_BYTES, parse_request
from offline_gemini.wire import ApiError, camelize_keys, decode_base64, load_json

__all__ = [
    "ASPECT_RATIOS",
    "IMAGE_SIZES",
    "KNOWN_MODELS",
    "MAX_REQUEST_BYTES",
    "ApiError",
    "Clock",
    "FileStore",
    "Faults",
    "ModelSpec",
    "OfflineGemini",
    "ParsedRequest",
    "PartKind",
    "RecordedRequest",
    "RenderJob",
    "StoredFile",
    "camelize_keys",
    "decode_base64",
    "image_size_for",
    "load_json",
    "parse_request",
    "render_cached",
    "render_png",
    "resolve_model",
    "signature_slots",
    "thought_signature_for",
]
