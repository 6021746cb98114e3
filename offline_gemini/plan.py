"""Planning an answer: which texts and images it has, what each frame shows, its usage."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from offline_gemini.render import RenderJob
from offline_gemini.request import ParsedRequest

_PROMPT_SHOWN = 4000


@dataclass(frozen=True)
class Item:
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


@dataclass(frozen=True)
class Look:
    """How frames look: the banner, and whether they have the live API's format and bytes."""

    banner: str
    real_sizes: bool = False


def _image_job(req: ParsedRequest, look: Look, heading: str, variant: int, *, thought: bool) -> RenderJob:
    width, height = (req.width // 2, req.height // 2) if thought else (req.width, req.height)
    real = look.real_sizes
    seed = hashlib.sha256(req.prompt.encode("utf-8") + bytes([variant])).digest()
    return RenderJob(
        width=width,
        height=height,
        title=look.banner,
        info=_info_line(req, width, height),
        heading=heading,
        # A frame shows at most a few hundred words; Pillow refuses strings over 1M chars.
        body=req.prompt[:_PROMPT_SHOWN] or "(no text in the last user turn)",
        footer=_footer(req),
        color_seed=seed,
        thumbs=req.thumbs,
        thought=thought,
        mime=req.spec.real_mime if real else "image/png",
        noise=req.spec.real_noise[req.image_size or "1K"] if real else 0,
    )


def thought_items(req: ParsedRequest, look: Look) -> list[Item]:
    if not req.spec.thinking:
        return []
    size = f"{req.aspect_ratio} {req.image_size or ''}".strip()
    plan = (
        f"**Composing the offline preview**\n\nI'm laying out a {size} frame for "
        f"\"{_short(req.prompt, 120)}\" with {len(req.thumbs)} reference image(s). "
        "A first draft checks the layout, a second one the text placement."
    )
    items = [Item("text", thought=True, text=plan)]
    for k in (1, 2):
        heading = f"Thinking · draft {k} of 2"
        items.append(Item("image", thought=True, job=_image_job(req, look, heading, k, thought=True)))
    return items


def final_items(req: ParsedRequest, look: Look) -> list[Item]:
    if not req.interleaved:
        text = f"Here is an offline preview for: {_short(req.prompt, 300)}"
        image = Item("image", job=_image_job(req, look, "Prompt", 0, thought=False))
        return ([Item("text", text=text)] if req.want_text else []) + [image]
    steps = 2 + req.seed[5] % 2
    items: list[Item] = []
    for k in range(1, steps + 1):
        if req.want_text:
            text = f"Step {k} of {steps}: offline preview for \"{_short(req.prompt, 120)}\".\n\n"
            items.append(Item("text", text=text))
        heading = f"Step {k} of {steps} · prompt"
        items.append(Item("image", job=_image_job(req, look, heading, 10 + k, thought=False)))
    return items


def _text_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def usage(req: ParsedRequest, items: Sequence[Item], *, with_candidates: bool = True) -> dict[str, Any]:
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
