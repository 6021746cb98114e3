"""What the server remembers of the requests it received: a bounded recent window.

A long session at real sizes sends requests of tens of megabytes each; keeping all of them
would grow without end inside whatever process runs the stand-in (``imagebot serve`` with
no key does). The log keeps the newest requests only, by count and by body bytes, and
counts every request ever received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Requests kept by default.
KEEP_REQUESTS = 20
#: Body bytes kept by default (the newest request is always kept, whatever its size).
KEEP_BYTES = 256 * 1024 * 1024


@dataclass
class RecordedRequest:
    """One request as received; ``status`` is what was answered (0: disconnected).

    ``size`` is the body's length in bytes (generate requests; 0 for others).
    """

    path: str
    model: str
    method: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0
    size: int = 0


class RequestLog(list[RecordedRequest]):
    """The newest requests, oldest first (a list: index, slice, ``clear`` as usual).

    Args:
        keep: how many requests to keep.
        keep_bytes: how many body bytes to keep; older requests go first, the newest stays.

    Attributes:
        total: requests received since the server started (not only those kept).
    """

    def __init__(self, keep: int = KEEP_REQUESTS, keep_bytes: int = KEEP_BYTES) -> None:
        super().__init__()
        if keep < 1:
            raise ValueError("keep at least one request")
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.total = 0

    def append(self, record: RecordedRequest) -> None:
        super().append(record)
        self.total += 1
        self._trim()

    def _trim(self) -> None:
        excess = len(self) - self.keep
        if excess > 0:
            del self[:excess]
        kept = sum(r.size for r in self)
        while len(self) > 1 and kept > self.keep_bytes:
            kept -= self[0].size
            del self[0]


def body_breakdown(body: Any) -> dict[str, int]:
    """Where a generate request's bytes go: thought signatures, inline data, file parts.

    Counts base64 characters as sent (keys in either spelling).
    """
    signatures = inline = files = parts = 0
    contents = body.get("contents") if isinstance(body, dict) else None
    for content in contents if isinstance(contents, list) else ():
        for part in content.get("parts") or () if isinstance(content, dict) else ():
            if not isinstance(part, dict):
                continue
            parts += 1
            signature = part.get("thoughtSignature") or part.get("thought_signature")
            if isinstance(signature, str):
                signatures += len(signature)
            blob = part.get("inlineData") or part.get("inline_data")
            if isinstance(blob, dict) and isinstance(blob.get("data"), str):
                inline += len(blob["data"])
            if "fileData" in part or "file_data" in part:
                files += 1
    return {"signature_bytes": signatures, "inline_data_bytes": inline, "file_parts": files,
            "parts": parts}
