"""Helpers for reading requests the stand-in recorded."""

from __future__ import annotations

import base64
import copy
from typing import Any

from offline_gemini import OfflineGemini


def resolved(body: dict[str, Any], server: OfflineGemini) -> dict[str, Any]:
    """The request with each Files API reference replaced by the file's bytes inline, as
    the SDK sends bytes: what the model is given."""
    if not isinstance(body, dict) or "contents" not in body:
        return body
    body = copy.deepcopy(body)
    for content in body["contents"]:
        for part in content["parts"]:
            if "fileData" in part:
                ref = part.pop("fileData")
                data = server.files.by_uri(ref["file_uri"], server.base_url).data
                part["inlineData"] = {"data": base64.urlsafe_b64encode(data).decode(),
                                      "mime_type": ref["mime_type"]}
    return body


def file_parts(body: dict[str, Any]) -> int:
    """How many parts of a request name a file."""
    return sum("fileData" in p for c in body["contents"] for p in c["parts"])
