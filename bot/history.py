"""The stored form of a thread's history, and the way back.

Each Content is kept as a JSON row whose image bytes and large thought signatures are
replaced by the sha256 of a content-addressed blob: rows stay a few hundred bytes however
large the images and signatures (1–2 MB each with real Gemini) grow, a thread can be sized
and trimmed without reading a blob, and bytes that recur are stored once. Pure functions
only; the store does the I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.images import sha256

if TYPE_CHECKING:  # imported where used: `imagebot threads` never loads google.genai
    from google.genai import types

#: The blobs-table MIME type of a thought signature (never shown or served as an image).
SIGNATURE_MIME = "application/vnd.imagebot.thought-signature"
#: Signatures up to this many bytes stay in the row (a blob row would cost more than it saves).
INLINE_SIGNATURE_MAX = 1024
#: Wire overhead of one part besides its text and base64 payloads (keys, quotes, mime type).
PART_OVERHEAD = 64
#: Wire size of an image sent as a Files API reference (``fileData`` with its full URI).
FILE_PART_BYTES = 192
#: Google's documented value for a signature the client does not send back: the validator
#: skips a part carrying it (Gemini API "Thought signatures" FAQ, which also names
#: ``context_engineering_is_the_way_to_go``). Older model turns of a request carry it
#: instead of their ~1 MB real signatures when ``history_signatures`` is a number.
DUMMY_SIGNATURE = b"skip_thought_signature_validator"

Blobs = dict[str, tuple[str, bytes]]


@dataclass(frozen=True)
class StoredContent:
    """One Content of a thread as stored: JSON parts naming blobs instead of holding bytes.

    Attributes:
        turn_id: the turn that wrote it (a turn writes its user Content and the model's).
        role: ``user`` or ``model``.
        parts: the parts as JSON; ``inline_data.blob`` and ``signature_blob`` are hashes.
    """

    turn_id: str
    role: str
    parts: tuple[dict[str, Any], ...]

    def blob_hashes(self) -> list[str]:
        hashes = []
        for part in self.parts:
            inline = part.get("inline_data")
            if inline and "blob" in inline:
                hashes.append(inline["blob"])
            if "signature_blob" in part:
                hashes.append(part["signature_blob"])
        return hashes

    def images(self) -> dict[str, str]:
        """The image blobs of this Content's parts: hash to MIME type."""
        return {inline["blob"]: inline.get("mime_type") or "application/octet-stream"
                for part in self.parts
                if (inline := part.get("inline_data")) and "blob" in inline}

    def wire_size(self, sizes: Mapping[str, int], files: Collection[str] = ()) -> int:
        """This Content's approximate size in a request, given the blobs' byte sizes and
        which images go as Files API references."""
        total = 0
        for part in self.parts:
            total += PART_OVERHEAD + len(part.get("text", "").encode())
            inline = part.get("inline_data")
            if inline and "blob" in inline:
                image = inline["blob"]
                total += FILE_PART_BYTES if image in files else b64_size(sizes[image])
            if "signature_blob" in part:
                total += b64_size(sizes[part["signature_blob"]])
            elif isinstance(part.get("thought_signature"), str):
                total += len(part["thought_signature"])
        return total


def signature_window(stored: Sequence[StoredContent], window: int | None
                     ) -> tuple[list[StoredContent], set[str]]:
    """The history as a request sends it with real thought signatures only in the
    ``window`` most recent model turns (None: in all of them); every signed part of an
    older model turn carries `DUMMY_SIGNATURE` instead. The stored rows are not changed.

    Returns:
        The Contents to send, and the turns whose model Content got the dummy.
    """
    if window is None:
        return list(stored), set()
    model_turns = list(dict.fromkeys(c.turn_id for c in stored if c.role == "model"))
    older = set(model_turns[:max(len(model_turns) - window, 0)])
    dummy = base64.b64encode(DUMMY_SIGNATURE).decode()
    sent: list[StoredContent] = []
    replaced: set[str] = set()
    for item in stored:
        if item.role != "model" or item.turn_id not in older:
            sent.append(item)
            continue
        parts = []
        for part in item.parts:
            if "signature_blob" in part or part.get("thought_signature"):
                part = {k: v for k, v in part.items() if k != "signature_blob"}
                part["thought_signature"] = dummy
                replaced.add(item.turn_id)
            parts.append(part)
        sent.append(StoredContent(turn_id=item.turn_id, role=item.role, parts=tuple(parts)))
    return sent, replaced


def b64_size(n: int) -> int:
    return (n + 2) // 3 * 4


def parse_row(turn_id: str, role: str, text: str) -> StoredContent:
    row = json.loads(text)
    return StoredContent(turn_id=turn_id, role=role, parts=tuple(row.get("parts", ())))


def deflate(contents: Sequence[types.Content], known: Mapping[int, str] | None = None
            ) -> tuple[list[tuple[str, str]], Blobs]:
    """Contents to JSON rows, with image bytes and large signatures moved into blobs.

    Args:
        known: sha256 digests already computed, keyed by ``id()`` of the bytes object, so
            an image hashed once in a turn is not hashed again here.

    Returns:
        ``(role, json)`` rows and the blobs they name, by hash.
    """
    from google.genai import types

    known = known or {}
    rows: list[tuple[str, str]] = []
    blobs: Blobs = {}

    def digest(data: bytes) -> str:
        return known.get(id(data)) or sha256(data)

    for content in contents:
        stripped = []
        for part in content.parts or ():
            update: dict[str, Any] = {}
            extra: dict[str, str] = {}
            blob = part.inline_data
            if blob is not None and blob.data is not None:
                image_hash = digest(blob.data)
                blobs[image_hash] = (blob.mime_type or "application/octet-stream", blob.data)
                update["inline_data"] = types.Blob(mime_type=blob.mime_type,
                                                   display_name=blob.display_name)
                extra["blob"] = image_hash
            signature = part.thought_signature
            if signature is not None and len(signature) > INLINE_SIGNATURE_MAX:
                signature_hash = digest(signature)
                blobs[signature_hash] = (SIGNATURE_MIME, signature)
                update["thought_signature"] = None
                extra["signature_blob"] = signature_hash
            dumped = (part.model_copy(update=update) if update else part).model_dump(
                mode="json", exclude_none=True)
            if "blob" in extra:
                dumped.setdefault("inline_data", {})["blob"] = extra["blob"]
            if "signature_blob" in extra:
                dumped["signature_blob"] = extra["signature_blob"]
            stripped.append(dumped)
        row = {"role": content.role, "parts": stripped}
        rows.append((content.role or "user", json.dumps(row, separators=(",", ":"))))
    return rows, blobs


def inflate(stored: Iterable[StoredContent], blobs: Mapping[str, bytes],
            files: Mapping[str, str] | None = None) -> list[types.Content]:
    """Stored Contents back to SDK Contents with every byte restored (rows are not changed).

    Args:
        blobs: the bytes of every blob named, except the images in ``files``.
        files: images to send as Files API references instead: blob hash to file URI. The
            part keeps everything else (``thought``, the thought signature) as stored.
    """
    from google.genai import types

    files = files or {}
    contents = []
    for item in stored:
        parts = []
        for raw in item.parts:
            part = dict(raw)
            inline = part.get("inline_data")
            if inline and inline.get("blob") in files:
                del part["inline_data"]
                part["file_data"] = {"file_uri": files[inline["blob"]],
                                     "mime_type": inline.get("mime_type")}
            elif inline and "blob" in inline:
                inline = dict(inline)
                inline["data"] = blobs[inline.pop("blob")]
                part["inline_data"] = inline
            if "signature_blob" in part:
                part["thought_signature"] = blobs[part.pop("signature_blob")]
            parts.append(part)
        contents.append(types.Content.model_validate({"role": item.role, "parts": parts}))
    return contents


def migrate_row(text: str) -> tuple[str, Blobs] | None:
    """An old row with large signatures inline, rewritten to name blobs (None: unchanged)."""
    row = json.loads(text)
    blobs: Blobs = {}
    for part in row.get("parts", ()):
        encoded = part.get("thought_signature")
        if not isinstance(encoded, str):
            continue
        signature = decode_b64(encoded)
        if len(signature) <= INLINE_SIGNATURE_MAX:
            continue
        digest = sha256(signature)
        blobs[digest] = (SIGNATURE_MIME, signature)
        del part["thought_signature"]
        part["signature_blob"] = digest
    if not blobs:
        return None
    return json.dumps(row, separators=(",", ":")), blobs


def decode_b64(text: str) -> bytes:
    """Decodes base64 in either alphabet (pydantic writes the URL-safe one)."""
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a stored thought signature is not base64") from exc
