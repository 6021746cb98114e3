"""Building answers: planning the parts, rendering them, signing them, and shaping the
result into one response body or a list of stream chunks."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from offline_gemini.faults import Fault
from offline_gemini.grounding import grounding_metadata
from offline_gemini.render import RenderJob, render_frame
from offline_gemini.request import ParsedRequest
from offline_gemini.signatures import signature_slots, thought_signature_for
from offline_gemini.wire import b64


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
            part = {"inlineData": {"mimeType": "image/png", "data": b64(payload)}}
        if item.thought:
            part["thought"] = True
        if index in slots:
            part["thoughtSignature"] = b64(thought_signature_for(payload))
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


def answer_body(answer: Answer, model: str, response_id: str) -> dict[str, Any]:
    if answer.prompt_feedback is not None:
        return _envelope(model, response_id, promptFeedback=answer.prompt_feedback,
                         usageMetadata=answer.usage)
    candidate = _candidate(answer.parts, answer.finish_reason, answer.grounding)
    return _envelope(model, response_id, candidates=[candidate], usageMetadata=answer.usage)


def answer_chunks(answer: Answer, model: str, response_id: str) -> list[dict[str, Any]]:
    """One chunk per part; the last one carries finishReason, grounding and usage."""
    if answer.prompt_feedback is not None or len(answer.parts) <= 1:
        return [answer_body(answer, model, response_id)]
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


def _blocked(req: ParsedRequest, reason: str) -> Answer:
    ratings = [
        {"category": category, "probability": "HIGH" if i == 0 else "NEGLIGIBLE"}
        for i, category in enumerate(_SAFETY_CATEGORIES)
    ]
    feedback = {"blockReason": reason, "safetyRatings": ratings}
    return Answer([], _usage(req, [], with_candidates=False), None, None, feedback)


def _text_answer(req: ParsedRequest, text: str, finish: str) -> Answer:
    items = [_Item("text", text=text)]
    return Answer(_wire_parts(items, {}), _usage(req, items), finish)




async def build_answer(req: ParsedRequest, fault: Fault | None, banner: str) -> Answer:
    """The answer to a validated request, or the odd answer an answer fault asks for."""
    if fault is not None and fault.kind == "block":
        return _blocked(req, fault.reason)
    if fault is not None and fault.kind == "text":
        return _text_answer(req, fault.text, "STOP")
    if fault is not None and fault.kind == "finish":
        if fault.with_text:
            return _text_answer(req, "I can't generate that image.", fault.reason)
        return Answer([], _usage(req, [], with_candidates=False), fault.reason)
    items = _thought_items(req, banner) + _final_items(req, banner)
    jobs = {i: item.job for i, item in enumerate(items) if item.job is not None}
    rendered = await asyncio.gather(*(asyncio.to_thread(render_frame, job) for job in jobs.values()))
    parts = _wire_parts(items, dict(zip(jobs, rendered, strict=True)))
    grounding = grounding_metadata(req, parts) if req.search and req.spec.search else None
    return Answer(parts, _usage(req, items), "STOP", grounding)
