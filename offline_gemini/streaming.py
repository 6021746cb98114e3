"""Streaming an answer as the live API does: one chunk per part, as SSE events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from offline_gemini.answers import Answer, answer_body, candidate, envelope


def answer_chunks(
    answer: Answer, model: str, response_id: str, *, trailing_signature: bool = False
) -> list[dict[str, Any]]:
    """One chunk per part, in answer order: thought text, thought images, final parts.

    The last chunk carries finishReason, grounding and usage. With
    ``trailing_signature`` the last image's signature moves to a trailing
    ``{"text": ""}`` part, as Google's thought-signature FAQ says a stream may do.
    """
    if answer.prompt_feedback is not None:
        return [answer_body(answer, model, response_id)]
    parts = _move_last_signature(answer.parts) if trailing_signature else answer.parts
    if len(parts) <= 1:
        return [answer_body(answer, model, response_id)]
    chunks = [
        envelope(model, response_id, candidates=[candidate([part], None, None)])
        for part in parts[:-1]
    ]
    last = candidate(parts[-1:], answer.finish_reason, answer.grounding)
    chunks.append(envelope(model, response_id, candidates=[last], usageMetadata=answer.usage))
    return chunks


def _move_last_signature(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    images = [i for i, p in enumerate(parts) if "inlineData" in p and "thoughtSignature" in p]
    if not images:
        return list(parts)
    moved = [dict(p) for p in parts]
    signature = moved[images[-1]].pop("thoughtSignature")
    moved.insert(images[-1] + 1, {"text": "", "thoughtSignature": signature})
    return moved


async def write_stream(
    request: web.Request, chunks: Sequence[dict[str, Any]], *, sse: bool, gap: float = 0.0
) -> web.StreamResponse:
    """Write chunks as SSE events (or one JSON array without ``alt=sse``), ``gap``
    seconds apart."""
    content_type = "text/event-stream" if sse else "application/json"
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        for index, chunk in enumerate(chunks):
            if index and gap > 0:
                await asyncio.sleep(gap)
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
