"""The values one turn passes around inside the service, and the small pure steps that make
them: fetching an attachment, a reply's parts, the stored view of a turn, the blobs and
hashes a commit needs, and finishing a commit whatever cancels the caller."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from bot import images
from bot.errors import AttachmentError, ImagebotError
from bot.model import (
    Attachment,
    Author,
    Reply,
    ReplyImage,
    ReplyPart,
    StoredImage,
    StoredReply,
    TurnView,
)
from bot.options import Options
from bot.planning import TurnPlan

if TYPE_CHECKING:  # google.genai is imported by the turn steps that need it at run time
    from google.genai import types

    from bot import variations
    from bot.gemini import Answer

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def fetch(attachment: Attachment) -> bytes:
    """The attachment's bytes; a platform failure becomes a message naming the file."""
    try:
        return await attachment.fetch()
    except (ImagebotError, asyncio.CancelledError):
        raise
    except Exception as exc:
        logger.warning("fetching %s failed: %s", attachment.name, type(exc).__name__)
        raise AttachmentError(f"Could not fetch `{attachment.name}` ({type(exc).__name__}). "
                              "Attach it again.") from exc


async def uncancelled(work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work`` to its end even when this task is cancelled meanwhile; the
    cancellation is absorbed (the work it would have interrupted has already begun)."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()


@dataclass
class Made:
    """The model's side of a turn: the answer the thread continues from, the Contents that
    enter the history, notices, and the candidates (with ``--count``)."""

    answer: Answer
    stored: list[types.Content]
    notices: list[str]
    outcomes: list[variations.Outcome] = field(default_factory=list)
    chosen: variations.Outcome | None = None
    #: Images already hashed and measured while streaming (see :func:`parts_of`).
    seen: Mapping[int, ReplyImage] = field(default_factory=dict)


def parts_of(content: types.Content, seen: Mapping[int, ReplyImage] | None = None
             ) -> tuple[list[ReplyPart], list[ReplyPart]]:
    """An answer's parts in the model's order, thoughts apart.

    Args:
        seen: images already hashed and measured (while streaming), by ``id`` of their
            bytes; an image is taken from there only when it holds those very bytes.
    """
    from bot.streaming import reply_image

    seen = seen or {}
    parts: list[ReplyPart] = []
    thoughts: list[ReplyPart] = []
    for part in content.parts or ():
        target = thoughts if part.thought else parts
        if part.inline_data is not None and part.inline_data.data:
            data = part.inline_data.data
            known = seen.get(id(data))
            image = known if known is not None and known.data is data else reply_image(
                part.inline_data)
            target.append(ReplyPart(kind="image", image=image))
        elif part.text:
            target.append(ReplyPart(kind="text", text=part.text))
    return parts, thoughts


def image_blobs(reply: Reply) -> dict[str, tuple[str, bytes]]:
    """A reply's images (every candidate's) as blobs, for a turn whose answer is kept
    outside the history."""
    found = [*reply.images, *(i for c in reply.candidates for i in c.images)]
    return {i.sha256: (i.mime_type, i.data) for i in found}


def known_hashes(refs: list[images.PreparedImage], reply: Reply) -> dict[int, str]:
    """Digests computed once this turn, by the identity of the bytes (which the Contents
    being stored share), so the store does not hash the same image again."""
    known = {id(r.data): r.sha256 for r in refs}
    candidate_parts = [p for c in reply.candidates for p in (*c.parts, *c.thoughts)]
    for part in (*reply.parts, *reply.thoughts, *candidate_parts):
        if part.image is not None:
            known[id(part.image.data)] = part.image.sha256
    return known


def options_dict(options: Options) -> dict[str, Any]:
    return {"model": options.model, "aspect_ratio": options.aspect_ratio, "size": options.size,
            "search": options.search, "image_only": options.image_only,
            "count": options.count}


def stored_view(reply: Reply, author: Author, plan: TurnPlan,
          refs: list[images.PreparedImage]) -> TurnView:
    return TurnView(
        id=reply.turn_id, thread=reply.thread, author=author, prompt=plan.prompt,
        options=options_dict(plan.options),
        refs=tuple(StoredImage(r.sha256, r.mime_type, r.name) for r in refs),
        reply=StoredReply.of(reply), created_at=time.time())


def with_view(reply: Reply, view: TurnView) -> Reply:
    return dataclasses.replace(reply, view=view)
