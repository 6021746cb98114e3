"""The playground's JSON: stored turns, thread summaries and the selectors' settings."""

from __future__ import annotations

from typing import Any

from bot.errors import OptionError
from bot.model import ThreadSummary, TurnView, ViewPart
from bot.options import IMAGE_SIZES, OptionInput
from bot.presentation import footer
from bot.service import ConversationService


def image_urls(sha: str) -> dict[str, str]:
    return {"url": f"/api/images/{sha}", "download_url": f"/api/images/{sha}/download"}


def part_json(part: ViewPart) -> dict[str, Any]:
    if part.image is None:
        return {"kind": "text", "text": part.text}
    image = part.image
    return {"kind": "image", **image_urls(image.sha256), "mime_type": image.mime_type,
            "width": image.width, "height": image.height}


def turn_json(view: TurnView) -> dict[str, Any]:
    """A stored turn as the page shows it: prompt, references, the reply in model order."""
    reply = view.reply
    return {
        "id": view.id,
        "prompt": view.prompt,
        "author": view.author.name or view.author.id,
        "created_at": view.created_at,
        "refs": [{"name": r.name, "mime_type": r.mime_type, **image_urls(r.sha256)}
                 for r in view.refs],
        "parts": [part_json(p) for p in reply.parts],
        "thoughts": [part_json(p) for p in reply.thoughts],
        "sources": [{"title": s.title, "url": s.url} for s in reply.sources],
        "search_queries": list(reply.search_queries),
        "search_entry_point": reply.search_entry_point,
        "notices": list(reply.notices),
        "settings": reply.settings,
        "usage": dict(reply.usage.__dict__),
        "elapsed": reply.elapsed,
        "model": reply.model,
        "offline": reply.offline,
        "footer": footer(reply),
        "chosen": reply.chosen,
        "candidates": [{"number": c.number, "parts": [part_json(p) for p in c.parts],
                        "error": c.error, "chosen": c.number == reply.chosen}
                       for c in reply.candidates],
    }


def thread_json(summary: ThreadSummary) -> dict[str, Any]:
    """A line of the thread list."""
    return {"id": summary.key.thread, "title": summary.title, "turns": summary.turns,
            "updated_at": summary.updated_at}


def settings_json(service: ConversationService, stored: OptionInput) -> dict[str, Any]:
    """What the selectors should show for a thread: its settings over the defaults."""
    try:
        options = service.effective(stored)
    except OptionError:
        options = service.effective(OptionInput())
    kept_size = stored.size if (stored.size or "").upper() in IMAGE_SIZES else None
    return {"model": options.model, "aspect_ratio": options.aspect_ratio or "auto",
            "size": options.size or (kept_size or "1K").upper(), "search": options.search,
            "summary": options.summary()}
