"""Wire helpers: camelCase keys, base64 in both alphabets, JSON bodies and Google's
``{"error": {...}}`` envelopes."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from aiohttp import web

_SNAKE_PIECE = re.compile(r"_([a-z0-9])")
_TO_STANDARD_B64 = str.maketrans("-_", "+/")

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
STATUS_MESSAGES: dict[int, str] = {
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
IMAGE_PROCESSING_ERROR = (
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


def b64(data: bytes) -> str:
    """Standard base64 text, as the API answers bytes."""
    return base64.b64encode(data).decode("ascii")


class ApiError(Exception):
    """An error answered as Google's ``{"error": {...}}`` JSON body."""

    def __init__(
        self,
        code: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        status: str | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self._status = status

    @property
    def status(self) -> str:
        """The canonical status name, e.g. ``INVALID_ARGUMENT``."""
        return self._status or _STATUS_NAMES.get(self.code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def invalid(message: str) -> ApiError:
    """A 400 INVALID_ARGUMENT error."""
    return ApiError(400, message)


def load_json(raw: bytes) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
