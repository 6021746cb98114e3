"""Building answers: rendering the planned parts, signing them, and shaping the result
into one response body."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offline_gemini.faults import Fault
from offline_gemini.grounding import grounding_metadata
from offline_gemini.plan import Item, Look, final_items, thought_items, usage
from offline_gemini.render import render_frame, render_stock
from offline_gemini.request import ParsedRequest
from offline_gemini.signatures import SMALL_SIGNATURE_BYTES, signature_slots, thought_signature_for
from offline_gemini.wire import b64


@dataclass(frozen=True)
class AnswerOptions:
    """The server's switches that shape answers."""

    banner: str = "OFFLINE PREVIEW"
    real_sizes: bool = False
    signature_bytes: int = SMALL_SIGNATURE_BYTES
    trailing_signature: bool = False
    #: Reuse one drawn frame per size (see :func:`render_stock`) instead of drawing each.
    stock_frames: bool = False


def _wire_parts(
    items: Sequence[Item], images: Mapping[int, bytes], signature_bytes: int
) -> list[dict[str, Any]]:
    """Answer parts in wire format, with signatures in the documented slots."""
    slots = set(signature_slots([(item.kind, item.thought) for item in items]))
    parts: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item.kind == "text":
            part: dict[str, Any] = {"text": item.text}
            payload = item.text.encode("utf-8")
        else:
            payload = images[index]
            mime = item.job.mime if item.job is not None else "image/png"
            part = {"inlineData": {"mimeType": mime, "data": b64(payload)}}
        if item.thought:
            part["thought"] = True
        if index in slots:
            part["thoughtSignature"] = b64(thought_signature_for(payload, signature_bytes))
        parts.append(part)
    return parts


@dataclass
class Answer:
    """An answer before it is split into one JSON body or several stream chunks."""

    parts: list[dict[str, Any]]
    usage: dict[str, Any]
    finish_reason: str | None = "STOP"
    grounding: dict[str, Any] | None = None
    prompt_feedback: dict[str, Any] | None = None


def candidate(parts: list[dict[str, Any]], finish: str | None, grounding: dict[str, Any] | None) -> dict[str, Any]:
    """One ``candidates[]`` entry; parts, finishReason and grounding only when given."""
    candidate: dict[str, Any] = {}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    if grounding:
        candidate["groundingMetadata"] = grounding
    return candidate


def envelope(model: str, response_id: str, **fields: Any) -> dict[str, Any]:
    """A response body: the given fields, then modelVersion and responseId."""
    return {**fields, "modelVersion": model, "responseId": response_id}


def answer_body(answer: Answer, model: str, response_id: str) -> dict[str, Any]:
    """The whole answer as one ``:generateContent`` response body."""
    if answer.prompt_feedback is not None:
        return envelope(model, response_id, promptFeedback=answer.prompt_feedback,
                         usageMetadata=answer.usage)
    only = candidate(answer.parts, answer.finish_reason, answer.grounding)
    return envelope(model, response_id, candidates=[only], usageMetadata=answer.usage)


_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_DANGEROUS_CONTENT",
)


def _blocked(req: ParsedRequest, reason: str) -> Answer:
    ratings = [
        {"category": category, "probability": "HIGH" if i == 0 else "NEGLIGIBLE"}
        for i, category in enumerate(_SAFETY_CATEGORIES)
    ]
    feedback = {"blockReason": reason, "safetyRatings": ratings}
    return Answer([], usage(req, [], with_candidates=False), None, None, feedback)


def _text_answer(req: ParsedRequest, text: str, finish: str, options: AnswerOptions) -> Answer:
    items = [Item("text", text=text)]
    return Answer(_wire_parts(items, {}, options.signature_bytes), usage(req, items), finish)




async def build_answer(req: ParsedRequest, fault: Fault | None, options: AnswerOptions) -> Answer:
    """The answer to a validated request, or the odd answer an answer fault asks for."""
    if fault is not None and fault.kind == "block":
        return _blocked(req, fault.reason)
    if fault is not None and fault.kind == "text":
        return _text_answer(req, fault.text, "STOP", options)
    if fault is not None and fault.kind == "finish":
        if fault.with_text:
            return _text_answer(req, "I can't generate that image.", fault.reason, options)
        return Answer([], usage(req, [], with_candidates=False), fault.reason)
    look = Look(options.banner, options.real_sizes)
    items = thought_items(req, look) + final_items(req, look)
    jobs = {i: item.job for i, item in enumerate(items) if item.job is not None}
    render = render_stock if options.stock_frames else render_frame
    rendered = await asyncio.gather(*(asyncio.to_thread(render, job) for job in jobs.values()))
    parts = _wire_parts(items, dict(zip(jobs, rendered, strict=True)), options.signature_bytes)
    grounding = grounding_metadata(req, parts) if req.search and req.spec.search else None
    return Answer(parts, usage(req, items), "STOP", grounding)
