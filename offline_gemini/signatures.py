"""Thought signatures: issuing them, where they go in a model turn, and checking them.

A signature is ``b"sig1" + HMAC-SHA256(secret, sha256(content) + length)`` followed by
filler derived from that HMAC up to the signature's length (the live API's are about
1 MB), so the whole of it can be verified without server state.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import replace

from offline_gemini.request import Content, Part, PartKind
from offline_gemini.wire import decode_base64, invalid

_SIGNATURE_SECRET = b"imagebot/offline-gemini/thought-signature/v1"
_SIGNATURE_PREFIX = b"sig1"
SMALL_SIGNATURE_BYTES = len(_SIGNATURE_PREFIX) + hashlib.sha256().digest_size
REAL_SIGNATURE_BYTES = 1024 * 1024
# Google's documented stand-ins for a signature the client never had.
_DUMMY_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)


def thought_signature_for(payload: bytes, size: int = SMALL_SIGNATURE_BYTES) -> bytes:
    """The signature of ``size`` bytes the stand-in issues for a part with this content.

    ``payload`` is the UTF-8 text of a text part or the decoded bytes of an image.
    Raises ValueError when ``size`` is below `SMALL_SIGNATURE_BYTES`.
    """
    return _signature_of_digest(hashlib.sha256(payload).digest(), size)


def _signature_of_digest(digest: bytes, size: int) -> bytes:
    if size < SMALL_SIGNATURE_BYTES:
        raise ValueError(f"a thought signature has at least {SMALL_SIGNATURE_BYTES} bytes")
    message = digest + size.to_bytes(8, "big")
    mac = hmac.new(_SIGNATURE_SECRET, message, hashlib.sha256).digest()
    filler = hashlib.shake_256(mac).digest(size - SMALL_SIGNATURE_BYTES) if size > SMALL_SIGNATURE_BYTES else b""
    return _SIGNATURE_PREFIX + mac + filler


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


def check_signatures(contents: Sequence[Content], *, accept_dummy: bool = True) -> None:
    """Refuse a history whose model turns lack a signature or carry a wrong one.

    Consecutive model contents count as one turn (a streamed chat stores one content
    per chunk). An unsigned image directly followed by a signed ``{"text": ""}`` part
    takes that part's signature: a stream may deliver it so. Google's documented dummy
    values (``skip_thought_signature_validator``, ``context_engineering_is_the_way_to_go``)
    skip the check; with ``accept_dummy`` False a part carrying one is refused exactly as
    a part with no signature, as a model that enforces the check on its own turns might
    (other projects report that 400 from newer image models; Vertex AI says Gemini 3 Pro
    Image does not enforce it). Raises ApiError.
    """
    for turn in _model_turns(contents):
        kinds = [(part.kind, part.thought) for _, _, part in turn]
        for slot in signature_slots(kinds):
            ci, pi, part = turn[slot]
            carrier = _trailing_carrier(turn, slot)
            if carrier is not None:
                ci, pi, signed = carrier
                part = replace(part, signature=signed.signature)
            _check_signature(part, ci + 1, pi + 1, accept_dummy)


def _trailing_carrier(turn: Sequence[tuple[int, int, Part]], slot: int) -> tuple[int, int, Part] | None:
    """The signed empty text right after an unsigned image, if that is what follows."""
    part = turn[slot][2]
    if part.kind != "image" or part.signature or slot + 1 >= len(turn):
        return None
    after = turn[slot + 1][2]
    if after.kind == "text" and after.text == "" and not after.thought and after.signature:
        return turn[slot + 1]
    return None


def _model_turns(contents: Sequence[Content]) -> list[list[tuple[int, int, Part]]]:
    """Runs of consecutive model contents as (content index, part index, part) lists."""
    turns: list[list[tuple[int, int, Part]]] = []
    previous = ""
    for ci, content in enumerate(contents):
        if content.role == "model":
            if previous != "model":
                turns.append([])
            turns[-1].extend((ci, pi, part) for pi, part in enumerate(content.parts))
        previous = content.role
    return turns


def _check_signature(part: Part, content_pos: int, part_pos: int, accept_dummy: bool) -> None:
    label = "Image" if part.kind == "image" else "Text"
    where = f"in content position {content_pos}, part position {part_pos}."
    missing = invalid(f"{label} part is missing a thought_signature {where}")
    if not part.signature:
        raise missing
    try:
        given = decode_base64(part.signature)
    except (binascii.Error, ValueError):
        given = b""
    if part.signature in _DUMMY_SIGNATURES or given.decode("latin-1") in _DUMMY_SIGNATURES:
        if accept_dummy:
            return
        raise missing
    if not _verifies(given, part.payload_digest()):
        raise invalid(f"Corrupted thought signature {where}")


def _verifies(given: bytes, digest: bytes) -> bool:
    """True when ``given`` is, byte for byte, the signature of its length for the payload
    whose SHA-256 is ``digest``."""
    if len(given) < SMALL_SIGNATURE_BYTES or not given.startswith(_SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(given, _signature_of_digest(digest, len(given)))
