"""A finished batch's answers as line results: each response is checked as a turn's answer
would be (blocked prompts, safety stops, text-only answers), its images kept as blobs, its
usage priced at batch rates. CPU work: run :func:`line_results` in a worker thread."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from bot import images
from bot.batch import LINE_BLOCKED, LINE_DONE, LINE_FAILED
from bot.batch_store import LineResult, UsageRow
from bot.errors import ErrorKind, GenerationError
from bot.gemini import map_response
from bot.history import Blobs
from bot.prices import cost

logger = logging.getLogger(__name__)

_BLOCKED = frozenset({ErrorKind.SAFETY, ErrorKind.BLOCKED, ErrorKind.RECITATION})
#: google.rpc codes a failed line may carry, in words.
_RPC = {3: "invalid request", 4: "timed out", 5: "not found", 7: "permission denied",
        8: "quota exhausted", 13: "internal error", 14: "unavailable"}


@dataclass(frozen=True)
class Failure:
    """A line Gemini could not run (a google.rpc.Status)."""

    code: int
    message: str


Outcome = types.GenerateContentResponse | Failure


@dataclass
class Mapped:
    """Everything a job's results write."""

    results: list[LineResult] = field(default_factory=list)
    usage: list[UsageRow] = field(default_factory=list)
    blobs: Blobs = field(default_factory=dict)


def inline_outcomes(responses: list[types.InlinedResponse]) -> dict[int, Outcome]:
    """Inline responses by line number (their metadata key, else their position)."""
    outcomes: dict[int, Outcome] = {}
    for index, item in enumerate(responses, start=1):
        number = _number((item.metadata or {}).get("key"), index)
        if item.response is not None:
            outcomes[number] = item.response
        else:
            error = item.error
            outcomes[number] = Failure(int(error.code or 0) if error else 0,
                                       (error.message or "") if error else "")
    return outcomes


def file_outcomes(data: bytes) -> dict[int, Outcome]:
    """The lines of a results file: ``{"key", "response"}`` or ``{"key", "error"}``."""
    outcomes: dict[int, Outcome] = {}
    for index, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            logger.warning("a batch results line is not JSON; skipped")
            continue
        number = _number(item.get("key"), index)
        if isinstance(item.get("response"), Mapping):
            outcomes[number] = types.GenerateContentResponse.model_validate_json(
                json.dumps(item["response"]))
        else:
            error = item.get("error") or {}
            outcomes[number] = Failure(int(error.get("code") or 0), str(error.get("message") or ""))
    return outcomes


def line_results(outcomes: Mapping[int, Outcome], options: Mapping[int, Mapping[str, Any]],
                 *, job_id: str, model: str) -> Mapped:
    """Maps each line's outcome; lines without one are left out (they were not run)."""
    mapped = Mapped()
    for number, outcome in sorted(outcomes.items()):
        if number not in options:
            logger.warning("batch %s: a result for unknown line %s", job_id, number)
            continue
        if isinstance(outcome, Failure):
            reason = _RPC.get(outcome.code, f"code {outcome.code}")
            message = f"Gemini could not run this prompt ({reason}): {outcome.message}".strip()
            mapped.results.append(LineResult(number, LINE_FAILED, {"error": message}))
            continue
        _answer(mapped, number, outcome, options[number], job_id=job_id, model=model)
    return mapped


def _answer(mapped: Mapped, number: int, response: types.GenerateContentResponse,
            line_options: Mapping[str, Any], *, job_id: str, model: str) -> None:
    try:
        answer = map_response(response)
    except GenerationError as exc:
        status = LINE_BLOCKED if exc.kind in _BLOCKED else LINE_FAILED
        mapped.results.append(LineResult(number, status, {"error": exc.user_message,
                                                          "kind": str(exc.kind)}))
        return
    found, texts = [], []
    for part in answer.content.parts or ():
        if part.thought:
            continue
        if part.inline_data is not None and part.inline_data.data:
            data = part.inline_data.data
            mime, width, height = _info(data, part.inline_data.mime_type)
            digest = images.sha256(data)
            mapped.blobs[digest] = (mime, data)
            found.append({"sha256": digest, "mime_type": mime, "width": width, "height": height})
        elif part.text:
            texts.append(part.text)
    usage = answer.usage
    result: dict[str, Any] = {"images": found, "texts": texts, "usage": dict(usage.__dict__)}
    if not found:
        result["error"] = "Gemini answered in text only, with no image."
        mapped.results.append(LineResult(number, LINE_FAILED, result))
        return
    price = cost(model, line_options.get("size"), images=len(found),
                 prompt_tokens=usage.prompt_tokens, thought_tokens=usage.thought_tokens,
                 output_tokens=usage.output_tokens, batch=True)
    mapped.results.append(LineResult(number, LINE_DONE, result, images=len(found),
                                     cost=price or 0.0))
    mapped.usage.append(UsageRow(f"batch:{job_id}:{number}", usage, len(found)))


def _info(data: bytes, declared: str | None) -> tuple[str, int, int]:
    try:
        return images.image_info(data)
    except Exception:  # an unreadable image is still kept; sizes are informative only
        return declared or "image/png", 0, 0


def _number(key: Any, fallback: int) -> int:
    try:
        return int(str(key))
    except (TypeError, ValueError):
        return fallback
